"""One HL7 v2 message in, our JSON answer and its ACK out: what the HTTP endpoint and the MLLP
listener both call, so they read, validate, interpret and store a message the same way.

The collaborators come in as arguments (the rule set, the code map, where to keep results), so
the same function serves a Flask request and a socket thread alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from marshmallow import ValidationError

from labservice.adapters.cbc_schema import load_read_documents
from labservice.adapters.errors import InputError
from labservice.adapters.hl7v2.ack import build_ack
from labservice.adapters.hl7v2.message import ParsedMessage, check_type, parse_message
from labservice.adapters.hl7v2.problems import REQUIRED_FIELD_MISSING, TABLE_VALUE_NOT_FOUND, Hl7Problem
from labservice.adapters.hl7v2.reader import Hl7Read, ReadSettings, read_parsed
from labservice.adapters.hl7v2.text import decode, normalise
from labservice.adapters.located import relocate
from labservice.errors import first_error, flatten_errors
from labservice.services.interpret import interpret_documents
from labservice.services.store_results import Keep


@dataclass
class Received:
    """The outcome of one message: the JSON answer (or the problem) and the ACK text."""

    answer: dict[str, Any] | None
    problem: Hl7Problem | None
    ack: str
    parsed: ParsedMessage | None = None

    @property
    def ack_code(self) -> str:
        return "AA" if self.problem is None else self.problem.ack_code


def receive_message(
    body: bytes,
    settings: ReadSettings,
    *,
    keep: Keep | None = None,
    charset: str | None = None,
    max_cbcs: int | None = None,
    clock_skew: timedelta | None = None,
    may_read: bool = True,
) -> Received:
    """Decode, read, validate, interpret and (with `keep`) store one message; never raises Hl7Problem.

    With `clock_skew`, a collection time more than that ahead of the service's clock is an AE naming its field.
    `may_read` false (a caller without the `read` scope): answers say nothing of stored results
    (labservice.services.interpret.interpret_documents)."""
    parsed: ParsedMessage | None = None
    try:
        parsed = parse_message(normalise(decode(body, charset)), max_groups=order_groups_read(max_cbcs))
        check_type(parsed.header)
        read = read_parsed(parsed, settings)
        answer = _interpret(read, settings, keep, max_cbcs, clock_skew, may_read)
    except Hl7Problem as problem:
        segments = parsed.segments if parsed else []
        return Received(None, problem, build_ack(parsed.message if parsed else None, segments, problem), parsed)
    return Received(answer, None, build_ack(read.parsed.message, read.parsed.segments), read.parsed)


def order_groups_read(max_cbcs: int | None) -> int | None:
    """Most OBR segments a message may hold, counted before it is parsed: twice the CBC limit (at least 100),
    as an ORU may carry other panels beside its CBCs; the CBCs themselves are counted after reading. A message
    of 25,000 order groups cost 15 s of parsing before its 413."""
    return None if max_cbcs is None else max(2 * max_cbcs, 100)


def _interpret(
    read: Hl7Read,
    settings: ReadSettings,
    keep: Keep | None,
    max_cbcs: int | None,
    clock_skew: timedelta | None,
    may_read: bool,
) -> dict[str, Any]:
    if read.errors:
        raise Hl7Problem(422, first_error(read.errors), read.errors, codes=read.codes)
    if not read.cbcs:
        errors: dict[str, list[str]] = {}
        for entry in read.unused:
            errors.setdefault(entry["location"], []).append(entry["reason"])
        raise Hl7Problem(
            422,
            f"No OBX in the message holds a CBC result read here ({len(read.unused)} "
            "segments or lines not used; `errors` says why).",
            errors or {"OBX": ["the message holds no OBX segment"]},
            default_code=REQUIRED_FIELD_MISSING,
        )
    if max_cbcs is not None and len(read.cbcs) > max_cbcs:
        raise Hl7Problem(
            413,
            f"The message holds {len(read.cbcs)} CBCs; the limit is {max_cbcs} per message.",
            {"OBR": [f"at most {max_cbcs} order groups with CBC results"]},
        )
    documents = [cbc.document for cbc in read.cbcs]
    locations = [cbc.locations for cbc in read.cbcs]
    try:
        loaded = load_read_documents(documents)
    except ValidationError as error:
        _raise_relocated(flatten_errors(error.messages), locations)
    header = read.parsed.header.as_dict()
    raws = [{**cbc.document, "hl7v2": {"message": header, **cbc.source}} for cbc in read.cbcs]
    try:
        answers = interpret_documents(
            loaded,
            ruleset=settings.ruleset,
            indexed=True,
            keep=keep,
            raws=raws,
            clock_skew=clock_skew,
            may_read=may_read,
        )
    except InputError as error:
        _raise_relocated(error.errors, locations)
    return {
        "message": header,
        "interpretations": [{**answer, "source": cbc.source} for cbc, answer in zip(read.cbcs, answers, strict=True)],
        "unused": read.unused,
    }


def _raise_relocated(errors: dict[str, list[str]], locations: list[dict[str, str]]) -> None:
    """A 422 whose errors name segments and fields; an unknown unit is HL7 error 103, the rest 102."""
    relocated: dict[str, list[str]] = {}
    codes: dict[str, str] = {}
    for path, messages in errors.items():
        where = next(iter(relocate({path: messages}, locations)))
        relocated.setdefault(where, []).extend(messages)
        if path.endswith(".unit"):
            codes[where] = TABLE_VALUE_NOT_FOUND
    raise Hl7Problem(422, first_error(relocated), relocated, codes=codes)
