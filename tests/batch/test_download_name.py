"""The name a batch's results download under (download_name.py, issue 14 item 5), and its header (RFC 6266).

RFC 6266 §4.3: `filename*` (RFC 8187: a charset, then the name percent-encoded) is preferred by clients that
understand it; `filename` is the fallback for those that do not, so it is given in plain ASCII.
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from werkzeug.http import parse_options_header

from labservice.batch.download_name import ascii_stand_in, content_disposition, result_filename

BATCH = "4b2d0f6c9e1a7b3d5f8e2c4a6b9d1e3f"


@pytest.mark.parametrize(
    ("uploaded", "kind", "name"),
    [
        ("cbc-results.csv", "csv", "cbc-results.interpreted.csv"),  # the issue's own example
        ("cbc-results.csv", "json", "cbc-results.interpreted.json"),
        ("CBC.CSV", "csv", "CBC.interpreted.csv"),
        ("export.txt", "csv", "export.interpreted.csv"),
        ("labs.2026-12.csv", "csv", "labs.2026-12.interpreted.csv"),  # only the last extension goes
        ("LABEVENTS", "csv", "LABEVENTS.interpreted.csv"),
        (r"C:\Users\lab\Blutbild März.csv", "csv", "Blutbild März.interpreted.csv"),  # an old browser's full path
        ("/home/lab/cbc.csv", "csv", "cbc.interpreted.csv"),
        ("x" * 300 + ".csv", "csv", "x" * 120 + ".interpreted.csv"),
        (None, "csv", f"batch-{BATCH}.csv"),  # no file name: the batch id, as before
        ("", "json", f"batch-{BATCH}.json"),
        (".csv", "csv", f"batch-{BATCH}.csv"),
        ("../..", "csv", f"batch-{BATCH}.csv"),
    ],
)
def test_the_result_is_named_after_the_upload(uploaded: str | None, kind: str, name: str) -> None:
    assert result_filename(uploaded, BATCH, kind) == name


def parsed(header: str) -> tuple[str, dict[str, str]]:
    return parse_options_header(header)


@pytest.mark.parametrize(
    "name",
    [
        "cbc-results.interpreted.csv",
        "Blutbild März.interpreted.csv",
        "血液検査.interpreted.csv",
        "evil\"; filename*=UTF-8''x.exe; Set-Cookie: stolen=1.interpreted.csv",
        "back\\slash.interpreted.csv",
    ],
)
def test_the_header_gives_the_name_and_cannot_be_broken(name: str) -> None:
    header = content_disposition(name)
    assert "\r" not in header and "\n" not in header
    value, options = parsed(header)
    assert (value, options) == ("attachment", {"filename": name})  # a client reading filename* gets the name
    assert header.count("filename*=") == 1 and header.count("filename=") == 1
    encoded = header.split("filename*=", 1)[1]
    assert encoded.startswith("UTF-8''") and unquote(encoded[len("UTF-8''") :]) == name
    stand_in = header.split('filename="', 1)[1].split('"', 1)[0]
    assert stand_in == ascii_stand_in(name) and stand_in.isascii()
    assert all(c.isalnum() or c in "._-" for c in stand_in)


def test_the_ascii_stand_in_keeps_what_it_can() -> None:
    assert ascii_stand_in("cbc-results.interpreted.csv") == "cbc-results.interpreted.csv"
    assert ascii_stand_in("Blutbild März.interpreted.csv") == "Blutbild_Marz.interpreted.csv"
    assert ascii_stand_in("血液検査.interpreted.csv") == "interpreted.csv"
    assert ascii_stand_in("血液検査") == "results"
