"""parse_feedback: the Feedback table of CDS Hooks 2.0, kept without patient data."""

from __future__ import annotations

import pytest

from labservice.adapters.cdshooks.feedback import parse_feedback
from labservice.adapters.cdshooks.request import BadHookRequest

#: The specification's three examples (suggestion accepted; overridden without and with a reason).
ACCEPTED = {
    "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
    "outcome": "accepted",
    "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
    "outcomeTimestamp": "2020-12-11T00:00:00Z",
}
OVERRIDDEN = {
    "card": "f6b95768-b1c8-40dc-8385-bf3504b82ffb",
    "outcome": "overridden",
    "outcomeTimestamp": "2020-12-11T00:00:00Z",
}
WITH_REASON = {
    "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
    "outcome": "overridden",
    "overrideReason": {
        "reason": {"code": "d7ecf885", "system": "https://example.com/cds-hooks/override-reason-system"},
        "userComment": "A comment entered by the clinician.",
    },
    "outcomeTimestamp": "2020-12-11T00:00:00Z",
}


def test_the_specifications_examples_are_accepted():
    records = parse_feedback({"feedback": [ACCEPTED, OVERRIDDEN, WITH_REASON]})
    assert records[0] == {
        "card": ACCEPTED["card"],
        "outcome": "accepted",
        "outcomeTimestamp": "2020-12-11T00:00:00Z",
        "acceptedSuggestions": ["e56e1945-20b3-4393-8503-a1a20fd73152"],
    }
    assert records[1] == {
        "card": OVERRIDDEN["card"],
        "outcome": "overridden",
        "outcomeTimestamp": "2020-12-11T00:00:00Z",
    }
    assert records[2]["overrideReason"] == {
        "system": "https://example.com/cds-hooks/override-reason-system",
        "code": "d7ecf885",
    }


def test_the_clinicians_comment_is_not_kept():
    [record] = parse_feedback({"feedback": [WITH_REASON]})
    assert "A comment entered by the clinician." not in str(record)
    assert record["userComment"] == "given (not kept)"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([ACCEPTED], "body"),
        ({}, "feedback"),
        ({"feedback": []}, "feedback"),
        ({"feedback": ["x"]}, "feedback[0]"),
        ({"feedback": [{**ACCEPTED, "card": ""}]}, "feedback[0].card"),
        ({"feedback": [{**ACCEPTED, "outcome": "ignored"}]}, "feedback[0].outcome"),
        ({"feedback": [{**ACCEPTED, "outcomeTimestamp": "yesterday"}]}, "feedback[0].outcomeTimestamp"),
        (
            {"feedback": [{k: v for k, v in ACCEPTED.items() if k != "outcomeTimestamp"}]},
            "feedback[0].outcomeTimestamp",
        ),
        (
            {"feedback": [{k: v for k, v in ACCEPTED.items() if k != "acceptedSuggestions"}]},
            "feedback[0].acceptedSuggestions",
        ),
        ({"feedback": [{**ACCEPTED, "acceptedSuggestions": [{"uuid": "x"}]}]}, "feedback[0].acceptedSuggestions[0].id"),
        ({"feedback": [OVERRIDDEN, {**WITH_REASON, "overrideReason": "busy"}]}, "feedback[1].overrideReason"),
        ({"feedback": [{**WITH_REASON, "overrideReason": {"reason": "busy"}}]}, "feedback[0].overrideReason.reason"),
    ],
)
def test_malformed_feedback_names_the_field(body, field):
    with pytest.raises(BadHookRequest) as caught:
        parse_feedback(body)
    assert field in caught.value.errors
