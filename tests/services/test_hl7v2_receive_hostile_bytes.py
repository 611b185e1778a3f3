"""Whatever bytes arrive, one message gets a Received (answer or problem) and an ACK; nothing raises.

The MLLP listener relies on this: a sender's garbage must be answered, not crash the connection.
"""

from __future__ import annotations

from datetime import UTC

import hl7
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labservice.adapters.hl7v2.codes import load_code_map
from labservice.adapters.hl7v2.reader import ReadSettings
from labservice.core.ruleset import default_ruleset
from labservice.services.hl7v2_receive import receive_message
from tests.adapters.hl7v2.samples import ALL_FILES, raw
from tests.hypothesis_profiles import examples

pytestmark = pytest.mark.slow  # fuzzing: garbled fixture messages, hundreds per run

RS = default_ruleset()
SETTINGS = ReadSettings(RS, load_code_map(RS), UTC, "UTC")
MESSAGES = [raw(path) for path in ALL_FILES]


def check(body: bytes) -> None:
    received = receive_message(body, SETTINGS)
    assert (received.answer is None) != (received.problem is None)
    ack = hl7.parse(received.ack)
    assert str(ack.segment("MSA")(1)) in ("AA", "AE", "AR")


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes(body):
    check(body)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(MESSAGES),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=0, max_size=3)), max_size=6),
)
def test_real_messages_with_bytes_replaced(message, edits):
    body = bytearray(message)
    for position, replacement in edits:
        at = position % (len(body) + 1)
        body[at : at + len(replacement)] = replacement
    check(bytes(body))


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(MESSAGES),
    st.text(alphabet="|^~\\&$#\r\n 0123456789.-<>=ABCXYZ", max_size=30),
    st.integers(0, 10_000),
)
def test_real_messages_with_delimiters_inserted(message, inserted, position):
    at = position % (len(message) + 1)
    check(message[:at] + inserted.encode() + message[at:])
