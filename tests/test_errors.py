"""labservice.errors.flatten_errors: marshmallow's nested messages -> dotted field paths."""

from __future__ import annotations

from labservice.errors import flatten_errors


def test_nested_dict_becomes_a_dotted_path():
    messages = {"results": {"platelets": {"unit": ["Unknown unit."]}}}
    assert flatten_errors(messages) == {"results.platelets.unit": ["Unknown unit."]}


def test_list_indexes_become_path_segments():
    messages = {3: {"results": {"platelets": {"value": ["Not a valid number."]}}}, 0: {"colour": ["Unknown field."]}}
    assert flatten_errors(messages) == {
        "3.results.platelets.value": ["Not a valid number."],
        "0.colour": ["Unknown field."],
    }


def test_schema_level_errors_take_the_object_path():
    messages = {
        "skin": {"lesions": {1: {"_schema": ["Give the lesion's type or its size_mm."]}}},
        "_schema": ["Whole body."],
    }
    assert flatten_errors(messages) == {
        "skin.lesions.1": ["Give the lesion's type or its size_mm."],
        "body": ["Whole body."],
    }


def test_several_messages_for_one_path_are_kept():
    messages = {"results": {"_schema": ["a"], "platelets": ["b"]}, "patient": ["c", "d"]}
    assert flatten_errors(messages) == {"results": ["a"], "results.platelets": ["b"], "patient": ["c", "d"]}
