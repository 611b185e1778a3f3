"""Malformed FHIR raises InputError naming the FHIR path."""

from __future__ import annotations

import pytest

from labservice.adapters.errors import InputError
from labservice.adapters.fhir.reader import read_fhir
from tests.adapters.fhir.build import bundle, observation, report


def _errors(resource) -> dict[str, list[str]]:
    with pytest.raises(InputError) as caught:
        read_fhir(resource)
    return caught.value.errors


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ([], "body"),
        ({"id": "x"}, "resourceType"),
        ({"resourceType": 7}, "resourceType"),
        ({"resourceType": "Patient", "id": "p"}, "resourceType"),
        ({"resourceType": "Bundle", "type": "history", "entry": []}, "Bundle.type"),
        ({"resourceType": "Bundle", "entry": []}, "Bundle.type"),
        ({"resourceType": "Bundle", "type": "collection", "entry": {"resource": {}}}, "Bundle.entry"),
        ({"resourceType": "Bundle", "type": "collection", "entry": ["x"]}, "Bundle.entry[0]"),
        (
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "o"}}]},
            "Bundle.entry[0].resource.resourceType",
        ),
        ({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": []}]}, "Bundle.entry[0].resource"),
        ({"resourceType": "Observation", "id": "o", "contained": {}}, "Observation(Observation/o).contained"),
        (
            {"resourceType": "Observation", "id": "o", "contained": [{"id": "x"}]},
            "Observation(Observation/o).contained[0].resourceType",
        ),
    ],
)
def test_structure_errors_name_the_path(resource, path):
    errors = _errors(resource)
    assert list(errors) == [path]


def test_the_unsupported_resource_type_is_named():
    assert _errors({"resourceType": "Claim"}) == {
        "resourceType": ["Claim is not supported here: send a Bundle, DiagnosticReport or Observation."]
    }


@pytest.mark.parametrize("value", ["7.2", True, None, [1], {"v": 1}])
def test_a_value_that_is_not_a_number_names_the_observation_in_the_bundle(value):
    obs = observation("abc", "718-7", valueQuantity={"value": value, "unit": "g/dL"})
    resource = bundle(
        report("r", ["Observation/abc"]),
        observation("x", "777-3", 1, "10*9/L"),
        {"resourceType": "Specimen", "id": "s"},
        obs,
    )
    if value is None:  # a Quantity with a null value has no value: unused, not malformed
        read = read_fhir(resource)
        assert [u.reason for u in read.unused] == [
            "hemoglobin: valueQuantity has no value",
            "no usable CBC result (the entries listed for its Observations say why)",
        ]
        return
    errors = _errors(resource)
    assert list(errors) == ["Bundle.entry[3].resource(Observation/abc).valueQuantity.value"]
    assert errors[next(iter(errors))][0].startswith("Expected a JSON number, not ")


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"valueQuantity": "7 g/dL"}, "Observation(Observation/o).valueQuantity"),
        ({"valueQuantity": {"value": 7, "unit": 5}}, "Observation(Observation/o).valueQuantity.unit"),
        ({"referenceRange": {"low": {"value": 1}}}, "Observation(Observation/o).referenceRange"),
        ({"referenceRange": [{"low": {"value": "12"}}]}, "Observation(Observation/o).referenceRange[0].low.value"),
        ({"referenceRange": [{"high": 13}]}, "Observation(Observation/o).referenceRange[0].high"),
        (
            {"referenceRange": [{"low": {"value": 12, "unit": "bananas"}}]},
            "Observation(Observation/o).referenceRange[0].low.unit",
        ),
        ({"status": 1}, "Observation(Observation/o).status"),
        ({"effectiveDateTime": 20260101}, "Observation(Observation/o).effectiveDateTime"),
        ({"subject": "Patient/p"}, "Observation(Observation/o).subject"),
        ({"hasMember": {"reference": "#x"}}, "Observation(Observation/o).hasMember"),
    ],
)
def test_field_type_errors_name_the_field(change, path):
    errors = _errors({**observation("o", "718-7", 7, "g/dL"), **change})
    assert list(errors) == [path]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400, -(10**400)])
def test_a_value_that_is_not_finite_is_refused(value):
    """10**400 (a JSON integer literal no float holds): found by the hostile corpus, float() raised OverflowError
    (a 500 from the FHIR endpoint and from CDS Hooks prefetch)."""
    errors = _errors(observation("o", "777-3", value, "10*9/L"))
    assert errors == {"Observation(Observation/o).valueQuantity.value": ["Expected a finite number."]}


def test_result_not_a_list_and_a_reference_not_an_object():
    assert list(_errors({**report("r", []), "result": {"reference": "Observation/o"}})) == [
        "DiagnosticReport(DiagnosticReport/r).result"
    ]
    assert list(_errors({**report("r", []), "result": ["Observation/o"]})) == [
        "DiagnosticReport(DiagnosticReport/r).result[0]"
    ]


def test_patient_fields_of_the_wrong_type():
    patient = {"resourceType": "Patient", "id": "p", "gender": 1}
    resource = bundle(patient, observation("o", "777-3", 250, "10*9/L", subject={"reference": "Patient/p"}))
    assert list(_errors(resource)) == ["Bundle.entry[0].resource(Patient/p).gender"]
    patient.update(gender="female", birthDate=19700101)
    assert list(_errors(resource)) == ["Bundle.entry[0].resource(Patient/p).birthDate"]


def test_component_not_a_list_or_not_an_object():
    assert list(_errors(observation("o", "58410-2", component={"code": {}}))) == [
        "Observation(Observation/o).component"
    ]
    assert list(_errors(observation("o", "58410-2", component=["x"]))) == ["Observation(Observation/o).component[0]"]
