"""The JSON columns' text, written by orjson: a batch job stores a few kilobytes of answer per CBC, and the
standard library's encoder spent a third of the storing time on it (issue 12 item 1).

The text parses to the same values as `json.dumps` gives (numbers, strings and keys alike: orjson writes non-ASCII
characters as UTF-8 where json escapes them, and no spaces). Whatever orjson refuses (an integer beyond 64 bits, a
type it does not know) is written by `json.dumps`, so nothing that stored before fails now. NaN is not valid JSON
and PostgreSQL refuses it in a JSON column, so no stored document holds one. Reading stays `json.loads`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _float_subclass(value: Any) -> Any:
    """numpy.float64 and other float subclasses, which json.dumps writes as floats."""
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Encoded(str):
    """JSON text already written: `dumps` passes it through as it is. A batch job renders its answers in one process
    and stores them in another, and sending them as text costs a fraction of pickling the dicts (issue 12 item 1)."""

    __slots__ = ()


def encoded(value: Any) -> Encoded:
    """`value` written as JSON text, marked as such."""
    return Encoded(dumps(value))


def with_member(text: Encoded, name: str, value: Any) -> Encoded:
    """The JSON object `text` with the member `name` added last: the text `dumps` writes for the object with that
    key added to it (the caller knows `text` has no such member; an empty object gets it as its only one)."""
    head = text.rstrip()
    if not head.endswith("}"):
        raise ValueError("not a JSON object")
    body = head[:-1].rstrip()
    separator = "" if body.endswith("{") else ","
    return Encoded(f"{body}{separator}{dumps(name)}:{dumps(value)}}}")


def dumps(value: Any) -> str:
    """`value` as JSON text, for SQLAlchemy's json_serializer (text already written, `Encoded`, as it is)."""
    if isinstance(value, Encoded):
        return str(value)
    try:
        return orjson.dumps(value, default=_float_subclass, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(value)
