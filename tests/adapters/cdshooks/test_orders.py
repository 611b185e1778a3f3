"""Orders at a low platelet count (clinical-rules §13 v2): the order tables, reading draftOrders, matching codes."""

from __future__ import annotations

import shutil

import pytest

from labservice.adapters.cdshooks.orders import (
    CODES_FILE,
    THRESHOLDS_FILE,
    OrderTableError,
    draft_orders,
    load_order_rules,
    matching_orders,
)
from labservice.adapters.cdshooks.request import BadHookRequest
from labservice.core.ruleset import default_ruleset

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"


def shipped():
    return load_order_rules(default_ruleset().directory)


def test_the_shipped_thresholds_are_those_of_clinical_rules_section_13():
    """§13 v2: neuraxial anaesthesia < 80; lumbar puncture < 40; major surgery < 50; central venous catheter
    < 20; therapeutic-dose anticoagulation < 50 [S31][S32]."""
    rules = shipped().rules
    assert {group: rule.platelets_below for group, rule in rules.items()} == {
        "neuraxial": 80,
        "lumbar_puncture": 40,
        "major_surgery": 50,
        "central_venous_catheter": 20,
        "therapeutic_anticoagulation": 50,
    }
    assert rules["therapeutic_anticoagulation"].sources == ("S32",)
    assert all(rule.sources == ("S31",) for g, rule in rules.items() if g != "therapeutic_anticoagulation")
    sources = default_ruleset().sources
    assert "Estcourt" in sources["S31"] and "Samuelson Bannow" in sources["S32"]


def test_every_shipped_group_has_example_codes():
    table = shipped()
    assert set(table.codes.values()) == set(table.rules)
    assert table.codes[(SNOMED, "277762005")] == "lumbar_puncture"
    assert table.codes[(RXNORM, "67108")] == "therapeutic_anticoagulation"  # enoxaparin


def _copy_tables(tmp_path):
    directory = default_ruleset().directory
    for name in (THRESHOLDS_FILE, CODES_FILE):
        shutil.copy(directory / name, tmp_path / name)
    return tmp_path


def test_a_code_of_an_unknown_group_is_refused_naming_file_and_line(tmp_path):
    folder = _copy_tables(tmp_path)
    with (folder / CODES_FILE).open("a", encoding="utf-8") as handle:
        handle.write("http://snomed.info/sct,1234,Something,bone_marrow_biopsy,no,site\n")
    lines = len((folder / CODES_FILE).read_text(encoding="utf-8").splitlines())
    with pytest.raises(OrderTableError, match=rf"{CODES_FILE}:{lines}: group 'bone_marrow_biopsy'"):
        load_order_rules(folder)


def test_a_threshold_that_is_not_a_number_is_refused_naming_file_and_line(tmp_path):
    folder = _copy_tables(tmp_path)
    text = (folder / THRESHOLDS_FILE).read_text(encoding="utf-8").replace(",80,", ",eighty,")
    (folder / THRESHOLDS_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(OrderTableError, match=rf"{THRESHOLDS_FILE}:2: platelets_below 'eighty'"):
        load_order_rules(folder)


def order_bundle(*resources):
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def medication(code, system=RXNORM, display="", id="med-1"):
    return {
        "resourceType": "MedicationRequest",
        "id": id,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": system, "code": code, "display": display}]},
    }


def procedure(code, system=SNOMED, text=None, id="sr-1"):
    concept = {"coding": [{"system": system, "code": code}]}
    if text:
        concept["text"] = text
    return {"resourceType": "ServiceRequest", "id": id, "status": "draft", "intent": "order", "code": concept}


def test_draft_orders_are_read_with_their_codes_and_place_in_the_call():
    orders = draft_orders(
        {"draftOrders": order_bundle(medication("67108", display="enoxaparin"), procedure("277762005", text="LP"))}
    )
    assert [(o.resource_type, o.id, o.path) for o in orders] == [
        ("MedicationRequest", "med-1", "context.draftOrders.entry[0].resource"),
        ("ServiceRequest", "sr-1", "context.draftOrders.entry[1].resource"),
    ]
    assert orders[1].codings == ((SNOMED, "277762005", ""),) and orders[1].text == "LP"


@pytest.mark.parametrize("context", [{}, {"draftOrders": []}, {"draftOrders": {"resourceType": "Patient"}}])
def test_draft_orders_that_are_not_a_bundle_name_the_field(context):
    with pytest.raises(BadHookRequest) as caught:
        draft_orders(context)
    assert "context.draftOrders" in caught.value.errors


def test_only_listed_codes_match_and_each_order_once():
    orders = draft_orders(
        {
            "draftOrders": order_bundle(
                medication("67108"),
                procedure("80146002", id="appendicectomy"),  # not listed: no match
                procedure("277762005", text="Lumbar puncture"),
            )
        }
    )
    matched = matching_orders(orders, shipped())
    assert [(order.id, rule.group, name) for order, rule, name in matched] == [
        ("med-1", "therapeutic_anticoagulation", "enoxaparin"),
        ("sr-1", "lumbar_puncture", "Lumbar puncture"),
    ]
