"""CSRF protection for the dashboard's forms: a synchronizer token kept in the session.

Every POST form of the dashboard carries the session's token in a hidden `csrf_token` field (the
`csrf_field()` template helper). Every dashboard POST is checked before its view runs; a missing or wrong
token answers 400 with a page that says so. The token is made when the session first needs one and
replaced at sign-in. SameSite=Lax session cookies are a second line, not the defence.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping, MutableMapping
from typing import Any

from markupsafe import Markup, escape

SESSION_KEY = "csrf_token"
FIELD_NAME = "csrf_token"
TOKEN_BYTES = 32


def new_token(session: MutableMapping[str, Any]) -> str:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session[SESSION_KEY] = token
    return token


def session_token(session: MutableMapping[str, Any]) -> str:
    """This session's token, made now if it has none yet."""
    token = session.get(SESSION_KEY)
    return token if isinstance(token, str) and token else new_token(session)


def hidden_field(session: MutableMapping[str, Any]) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD_NAME, escape(session_token(session)))


def is_valid(session: Mapping[str, Any], sent: Any) -> bool:
    """The form's token equals the session's (compared in constant time); no token on either side is invalid."""
    expected = session.get(SESSION_KEY)
    if not isinstance(expected, str) or not expected or not isinstance(sent, str) or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())
