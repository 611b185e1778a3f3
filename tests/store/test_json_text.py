"""store.json_text: the JSON columns' text, and answers written once as text (issue 12 item 1: a batch job's answers
cross from the process that renders them to the one that stores them as text, and most are stored as they are)."""

from __future__ import annotations

import json
import pickle

import pytest

from labservice.store import json_text


def test_text_already_written_passes_through_dumps_unchanged() -> None:
    text = json_text.encoded({"b": 1, "a": [1.5, "é"]})
    assert json_text.dumps(text) == text
    assert json.loads(json_text.dumps(text)) == {"b": 1, "a": [1.5, "é"]}


def test_a_member_added_to_the_text_is_the_text_of_the_object_with_that_key_added_last() -> None:
    answer = {"urgency": "urgent", "findings": [{"code": "thrombocytopenia", "value": 45.0}], "summary": "x"}
    delta = {"previous": None, "platelet_change_percent": -52.5}
    expected = json_text.dumps({**answer, "delta": delta})
    assert json_text.with_member(json_text.encoded(answer), "delta", delta) == expected
    assert isinstance(json_text.with_member(json_text.encoded(answer), "delta", delta), json_text.Encoded)


def test_a_member_added_to_an_empty_object_is_its_only_member() -> None:
    assert json.loads(json_text.with_member(json_text.Encoded("{ }"), "delta", {})) == {"delta": {}}


def test_only_an_object_takes_a_member() -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        json_text.with_member(json_text.Encoded("[1, 2]"), "delta", {})


def test_text_crosses_a_process_boundary_as_text() -> None:
    text = json_text.encoded({"a": 1})
    back = pickle.loads(pickle.dumps(text))
    assert isinstance(back, json_text.Encoded) and back == text
