"""Query parameters the HTTP edges share: the API's endpoints, and the upload that the dashboard shares with the API."""

from __future__ import annotations

from flask import request

from labservice.errors import Problem

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


def store_requested() -> bool:
    """`?store=false` interprets without storing (default true). Any other word is a 422 naming `store`: a typo
    such as `store=flase` must not store patient data the caller meant to keep out."""
    sent = request.args.get("store")
    if sent is None or sent.lower() in TRUE_WORDS:
        return True
    if sent.lower() in FALSE_WORDS:
        return False
    raise Problem(422, f"store {sent[:40]!r} is not true or false.", {"store": ["Expected true or false."]})


def excel_requested(form: bool = False) -> bool:
    """`excel=true` asks for a CSV result that begins with a UTF-8 byte order mark, so Excel reads it as UTF-8
    (issue 14 item 5): a query parameter, or with `form` also a field of an upload whose form is read already.
    Default false; any other word is a 422 naming `excel`."""
    sent = request.args.get("excel")
    if sent is None and form:
        sent = request.form.get("excel")
    if sent is None or sent.lower() in FALSE_WORDS:
        return False
    if sent.lower() in TRUE_WORDS:
        return True
    raise Problem(422, f"excel {sent[:40]!r} is not true or false.", {"excel": ["Expected true or false."]})
