"""Generated ORU^R01-like messages (tests/security/strategies.py) through the adapter: nothing raises, every
message gets an answer or a problem and an ACK that says which, and every OBX of an answered message is
accounted for: used for a CBC or listed in `unused` with a reason.

test_hl7v2_receive_hostile_bytes.py garbles the real fixture messages byte by byte; these start from a generated
structure (random encoding characters and separators, codes, values, units, statuses, segments, overlong
fields, charsets) so they reach the reader's field handling rather than stopping at the MSH.
"""

from __future__ import annotations

from datetime import UTC

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from labservice.adapters.hl7v2.codes import load_code_map
from labservice.adapters.hl7v2.reader import ReadSettings
from labservice.core.ruleset import default_ruleset
from labservice.services.hl7v2_receive import Received, receive_message
from tests.hypothesis_profiles import examples
from tests.security.strategies import Hl7Message, garbled_hl7_bytes, hl7_messages, msa_code

pytestmark = pytest.mark.slow  # fuzzing: generated messages, hundreds per run

RS = default_ruleset()
SETTINGS = ReadSettings(RS, load_code_map(RS), UTC, "UTC")
PROBLEM_STATUSES = (400, 413, 415, 422)
FUZZ = settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def received(body: bytes, max_cbcs: int | None = 1000) -> Received:
    note(f"message: {body[:2000]!r}")
    outcome = receive_message(body, SETTINGS, max_cbcs=max_cbcs)
    assert (outcome.answer is None) != (outcome.problem is None)
    assert msa_code(outcome.ack) == outcome.ack_code
    if outcome.problem is not None:
        assert outcome.problem.status in PROBLEM_STATUSES
        assert outcome.problem.detail
        event(f"problem {outcome.problem.status}")
    else:
        event("answered")
    return outcome


def obx_locations(outcome: Received) -> set[str]:
    assert outcome.parsed is not None
    return {segment.location for segment in outcome.parsed.segments if segment.id == "OBX"}


@FUZZ
@given(st.one_of(hl7_messages(), hl7_messages(garbage=False)))
def test_a_generated_message_is_answered_and_every_obx_accounted_for(message: Hl7Message):
    outcome = received(message.data)
    if outcome.answer is None:
        return
    used = {
        location
        for interpretation in outcome.answer["interpretations"]
        for location in interpretation["source"]["observations"].values()
    }
    unused = {entry["location"] for entry in outcome.answer["unused"]}
    assert all(entry["reason"] for entry in outcome.answer["unused"])
    assert obx_locations(outcome) <= used | unused, obx_locations(outcome) - used - unused
    assert outcome.answer["interpretations"], "an answer holds at least one CBC"
    for interpretation in outcome.answer["interpretations"]:
        assert interpretation["urgency"] in ("routine", "soon", "urgent", "immediate")


@FUZZ
@given(garbled_hl7_bytes())
def test_a_garbled_generated_message_is_answered(body: bytes):
    received(body)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hl7_messages(max_groups=6, max_obx=3, garbage=False), st.integers(min_value=1, max_value=3))
def test_more_cbcs_than_allowed_is_413_whatever_the_message(message: Hl7Message, limit: int):
    outcome = received(message.data, max_cbcs=limit)
    unlimited = received(message.data, max_cbcs=None)
    if unlimited.answer is not None:  # answered without a limit: the same answer within it, else 413
        if len(unlimited.answer["interpretations"]) > limit:
            assert outcome.problem is not None and outcome.problem.status == 413
        else:
            assert outcome.answer is not None
    else:  # refused anyway: for the same reason, or first for holding too many CBCs (counted before validation)
        assert outcome.problem is not None
        assert outcome.problem.status in (unlimited.problem.status, 413)
