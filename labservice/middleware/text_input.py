"""No NUL character reaches a view: the path, the query string and form fields holding one are a 400.

PostgreSQL text cannot hold NUL (psycopg raises on it), so `?patient=%00`, a path segment `%00` and a
sign-in username with a NUL answered 500 there while SQLite took them. No field of
the service has a use for NUL, so it is refused once, after authentication (a caller without
credentials is answered 401 first, as for any other request) and before any view, with a
problem naming the parameter. Form fields are checked only in URL-encoded bodies (the dashboard's
forms): a multipart upload is streamed by its view and never read here.
"""

from __future__ import annotations

from flask import Flask, request

from labservice.errors import Problem

NUL = "\x00"
FORM = "application/x-www-form-urlencoded"


def refuse_nul() -> None:
    """before_request: 400 naming where a NUL was sent (path, a query parameter, a form field)."""
    if NUL in request.path:
        raise Problem(400, "The path holds a NUL character (%00).", {"path": ["NUL is not allowed"]})
    _check(request.args, "query parameter")
    if request.mimetype == FORM:
        _check(request.form, "form field")


def _check(values, kind: str) -> None:
    for name, value in values.items(multi=True):
        if NUL in name or NUL in value:
            shown = name.replace(NUL, "\\0")
            raise Problem(400, f"The {kind} {shown!r} holds a NUL character (%00).", {shown: ["NUL is not allowed"]})


def register_text_input(app: Flask) -> None:
    app.before_request(refuse_nul)
