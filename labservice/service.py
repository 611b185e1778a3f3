"""Use cases the edges call: parse → interpret → render. No Flask here."""

from __future__ import annotations

from labservice.adapters.json_cbc import parse_documents
from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import render_interpretations
from labservice.core.ruleset import Ruleset, default_ruleset


def interpret_documents(docs: list[dict], ruleset: Ruleset | None = None, *, indexed: bool = False) -> list[dict]:
    """Interpret loaded CBC documents; raise InputError (with field paths) before interpreting any.

    `indexed` prefixes error paths with the list index, for requests that sent a JSON array.
    """
    rs = ruleset or default_ruleset()
    parsed = parse_documents(docs, rs, indexed=indexed)
    result = interpret_cbc_table(parsed.columns, ruleset=rs)
    return render_interpretations(result, parsed.patient_ids, parsed.reported)
