"""The error of a malformed rule table, on its own so that the unit table (units.py) can raise it without
importing the loader that imports it (ruleset.py): no import cycle in the core."""

from __future__ import annotations


class RulesetError(ValueError):
    """A rule table is malformed; the message names the file and line."""
