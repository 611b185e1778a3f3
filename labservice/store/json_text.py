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


def dumps(value: Any) -> str:
    """`value` as JSON text, for SQLAlchemy's json_serializer."""
    try:
        return orjson.dumps(value, default=_float_subclass, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(value)
