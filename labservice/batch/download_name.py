"""The name a batch's results download under: the uploaded file's, so `cbc-results.csv` comes back as
`cbc-results.interpreted.csv` (issue 14 item 5), in a Content-Disposition header that no file name can break.

The name is the client's text: it is only a label. The header carries it twice (RFC 6266): `filename*` with the
name itself, UTF-8 and percent-encoded (RFC 8187), and `filename` with an ASCII stand-in for older clients, made of
letters, digits, `.`, `_` and `-` only, so neither can close its parameter or start another, or a header.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

#: Extensions of the uploaded file that the result's name replaces.
UPLOAD_EXTENSIONS = (".csv", ".txt", ".tsv", ".tab")
#: Most characters of the uploaded name kept (the rest of a longer name is cut).
STEM_MAX_LENGTH = 120
#: RFC 8187 attr-char besides letters and digits: what filename* leaves unencoded.
_ATTR_CHARS = "!#$&+-.^_`|~"
_NOT_ASCII_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def result_filename(uploaded: str | None, batch_id: str, kind: str) -> str:
    """`<the upload's name without .csv>.interpreted.<kind>`; `batch-<id>.<kind>` when the upload had no name."""
    base = re.split(r"[/\\]", _CONTROL.sub("", uploaded or ""))[-1]
    for extension in UPLOAD_EXTENSIONS:
        if base.lower().endswith(extension):
            base = base[: -len(extension)]
            break
    stem = base.strip(" .")[:STEM_MAX_LENGTH].strip(" .")
    if not stem:
        return f"batch-{batch_id}.{kind}"
    return f"{stem}.interpreted.{kind}"


def ascii_stand_in(filename: str) -> str:
    """The name in letters, digits, `.`, `_` and `-` (accents dropped: é -> e; anything else -> _)."""
    plain = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    return _NOT_ASCII_SAFE.sub("_", plain).strip("._") or "results"


def content_disposition(filename: str) -> str:
    """`attachment; filename="<ASCII stand-in>"; filename*=UTF-8''<the name, percent-encoded>` (RFC 6266)."""
    return f"attachment; filename=\"{ascii_stand_in(filename)}\"; filename*=UTF-8''{quote(filename, safe=_ATTR_CHARS)}"
