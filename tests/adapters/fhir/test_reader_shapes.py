"""read_fhir on the shapes a client may send: contained, bundled, panels, loose Observations; references; units."""

from __future__ import annotations

from labservice.adapters.fhir.reader import read_fhir
from tests.adapters.fhir.build import bundle, observation, patient, quantity, report


def _one(read):
    assert len(read.cbcs) == 1, read
    return read.cbcs[0]


# --- grouping --------------------------------------------------------------------------------------


def test_a_diagnostic_report_with_contained_observations_and_patient():
    resource = report(
        "r1",
        ["#plt", "#hb"],
        subject={"reference": "#pat"},
        effectiveDateTime="2026-03-01T08:00:00Z",
        contained=[
            observation("plt", "777-3", 45, "10*3/uL"),
            observation("hb", "718-7", 82, "g/L"),
            patient("pat", mrn="MRN-1", gender="female", birth="1990-03-01"),
        ],
    )
    read = read_fhir(resource)
    cbc = _one(read)
    assert cbc.document == {
        "results": {"platelets": {"value": 45.0, "unit": "10*3/uL"}, "hemoglobin": {"value": 82.0, "unit": "g/L"}},
        "collected_at": "2026-03-01T08:00:00Z",
        "patient": {"id": "MRN-1", "sex": "female", "birth_date": "1990-03-01"},
    }
    assert cbc.report_reference == "DiagnosticReport/r1"
    assert [(u.analyte, u.reference) for u in cbc.observations] == [("platelets", "#plt"), ("hemoglobin", "#hb")]
    assert cbc.locations["results.platelets"] == "DiagnosticReport(DiagnosticReport/r1).contained[0](Observation/plt)"
    assert cbc.locations["patient.birth_date"] == (
        "DiagnosticReport(DiagnosticReport/r1).contained[2](Patient/pat).birthDate"
    )
    assert read.unused == [] and read.ignored == {}


def test_a_top_level_panel_observation_with_has_member():
    panel = observation(
        "panel",
        "57021-8",
        hasMember=[{"reference": "#w"}, {"reference": "#n"}],
        effectiveDateTime="2026-03-01T08:00:00+01:00",
        subject={"reference": "Patient/p9"},
        contained=[observation("w", "6690-2", 2.1, "10*9/L"), observation("n", "751-8", 0.4, "10*9/L")],
    )
    cbc = _one(read_fhir(panel))
    assert cbc.document["results"] == {
        "wbc": {"value": 2.1, "unit": "10*9/L"},
        "neutrophils": {"value": 0.4, "unit": "10*9/L"},
    }
    assert cbc.document["patient"] == {"id": "Patient/p9"}  # the reference, as the Patient is not in the input
    assert cbc.report_reference == "Observation/panel"


def test_nested_panels_in_a_bundle_make_one_cbc_and_a_chemistry_panel_beside_them_is_ignored():
    read = read_fhir(
        bundle(
            report("rep", ["Observation/cbc", "Observation/chem"]),
            observation("cbc", "58410-2", hasMember=[{"reference": "Observation/plt"}]),
            observation("plt", "777-3", 300, "10*9/L"),
            observation("chem", "24323-8", hasMember=[{"reference": "Observation/na"}]),
            observation("na", "2951-2", 140, "mmol/L"),
        )
    )
    cbc = _one(read)
    assert cbc.document["results"] == {"platelets": {"value": 300.0, "unit": "10*9/L"}}
    assert read.ignored == {"Observation": 2}  # the chemistry panel and its sodium


def test_two_reports_give_two_cbcs_in_input_order():
    read = read_fhir(
        bundle(
            report("a", ["Observation/p1"]),
            report("b", ["Observation/p2"]),
            observation("p1", "777-3", 100, "10*9/L"),
            observation("p2", "777-3", 200, "10*9/L"),
        )
    )
    assert [c.document["results"]["platelets"]["value"] for c in read.cbcs] == [100.0, 200.0]
    assert [c.report_reference for c in read.cbcs] == ["DiagnosticReport/a", "DiagnosticReport/b"]


def test_loose_observations_group_by_subject_specimen_and_time():
    def obs(ident, code, value, who, when, specimen="Specimen/s1"):
        return observation(
            ident,
            code,
            value,
            "10*9/L",
            subject={"reference": who},
            effectiveDateTime=when,
            specimen={"reference": specimen},
        )

    read = read_fhir(
        bundle(
            obs("a1", "777-3", 40, "Patient/a", "2026-01-01T08:00:00Z"),
            obs("a2", "6690-2", 3.0, "Patient/a", "2026-01-01T08:00:00Z"),
            obs("a3", "777-3", 35, "Patient/a", "2026-01-02T08:00:00Z"),
            obs("b1", "777-3", 300, "Patient/b", "2026-01-01T08:00:00Z"),
            obs("a4", "6690-2", 3.1, "Patient/a", "2026-01-01T08:00:00Z", specimen="Specimen/s2"),
        )
    )
    groups = [sorted((u.analyte, u.reference) for u in c.observations) for c in read.cbcs]
    assert groups == [
        [("platelets", "Observation/a1"), ("wbc", "Observation/a2")],
        [("platelets", "Observation/a3")],
        [("platelets", "Observation/b1")],
        [("wbc", "Observation/a4")],
    ]
    assert all(c.report is None and c.report_reference is None for c in read.cbcs)


def test_an_observation_already_in_a_report_is_not_also_a_loose_cbc():
    read = read_fhir(bundle(report("r", ["Observation/p"]), observation("p", "777-3", 100, "10*9/L")))
    assert len(read.cbcs) == 1


# --- references ------------------------------------------------------------------------------------


def test_urn_uuid_full_urls_resolve_and_are_the_references_reported():
    urls = [
        "urn:uuid:00000000-0000-4000-8000-000000000001",
        "urn:uuid:00000000-0000-4000-8000-000000000002",
        "urn:uuid:00000000-0000-4000-8000-000000000003",
    ]
    read = read_fhir(
        bundle(
            patient("x", gender="male", birth="1950-01-01"),
            report("r", [urls[2]], subject={"reference": urls[0]}, effectiveDateTime="2026-01-01T00:00:00Z"),
            observation("o", "777-3", 250, "10*3/uL"),
            kind="transaction",
            urls=urls,
        )
    )
    cbc = _one(read)
    assert cbc.document["patient"] == {"id": "x", "sex": "male", "birth_date": "1950-01-01"}
    assert cbc.report_reference == urls[1]
    assert cbc.observations[0].reference == urls[2]
    assert cbc.subject == urls[0]
    assert cbc.patient is not None and cbc.patient["id"] == "x"


def test_relative_references_resolve_against_the_entry_base_and_absolute_ones_by_full_url():
    read = read_fhir(
        bundle(
            report("r", ["Observation/o", "http://example.org/fhir/Observation/h"]),
            observation("o", "777-3", 250, "10*3/uL"),
            observation("h", "718-7", 13, "g/dL"),
        )
    )
    assert sorted(_one(read).document["results"]) == ["hemoglobin", "platelets"]


def test_a_versioned_reference_resolves_to_the_resource():
    read = read_fhir(bundle(report("r", ["Observation/o/_history/2"]), observation("o", "777-3", 250, "10*3/uL")))
    assert _one(read).document["results"]["platelets"]["value"] == 250.0


def test_an_unresolved_result_is_unused_with_its_reference_and_the_rest_is_read():
    read = read_fhir(
        bundle(
            report("r", ["Observation/here", "Observation/gone", "urn:uuid:nowhere"]),
            observation("here", "777-3", 250, "10*3/uL"),
        )
    )
    _one(read)
    assert [u.as_dict() for u in read.unused] == [
        {
            "resource_type": "Observation",
            "id": "gone",
            "path": "Bundle.entry[0].resource(DiagnosticReport/r).result[1]",
            "reason": "the reference 'Observation/gone' does not resolve in the input",
        },
        {
            "resource_type": "Observation",
            "id": "urn:uuid:nowhere",
            "path": "Bundle.entry[0].resource(DiagnosticReport/r).result[2]",
            "reason": "the reference 'urn:uuid:nowhere' does not resolve in the input",
        },
    ]


def test_a_result_that_points_to_something_else_than_an_observation_is_unused():
    read = read_fhir(
        bundle(
            report("r", ["Observation/o", "Specimen/s"]),
            observation("o", "777-3", 250, "10*3/uL"),
            {"resourceType": "Specimen", "id": "s"},
        )
    )
    assert [(u.resource_type, u.reason) for u in read.unused] == [
        ("Specimen", "Specimen/s is a Specimen, not an Observation")
    ]


def test_a_cbc_report_whose_results_all_fail_is_unused_itself():
    read = read_fhir(
        bundle(
            report("r", ["Observation/o"]),
            observation("o", "777-3", dataAbsentReason={"coding": [{"code": "not-performed"}]}),
        )
    )
    assert read.cbcs == []
    assert [(u.resource_type, u.id, u.reason) for u in read.unused] == [
        ("Observation", "o", "platelets: no value: dataAbsentReason not-performed"),
        ("DiagnosticReport", "r", "no usable CBC result (the entries listed for its Observations say why)"),
    ]


def test_a_report_of_something_else_is_ignored_not_unused():
    read = read_fhir(
        bundle(
            report("lipids", ["Observation/chol"], code="57698-3"),
            observation("chol", "2093-3", 5.2, "mmol/L"),
            {"resourceType": "Claim", "id": "c"},
            {"resourceType": "Encounter", "id": "e"},
        )
    )
    assert read.cbcs == [] and read.unused == []
    assert read.ignored == {"Claim": 1, "DiagnosticReport": 1, "Encounter": 1, "Observation": 1}


# --- values, statuses, units -----------------------------------------------------------------------


def test_results_without_a_usable_number_are_unused_with_the_reason():
    read = read_fhir(
        bundle(
            report(
                "r",
                [
                    f"Observation/{i}"
                    for i in ("ok", "absent", "text", "concept", "none", "censored", "err", "cancel", "noval")
                ],
            ),
            observation("ok", "777-3", 250, "10*3/uL"),
            observation("absent", "6690-2", dataAbsentReason={"text": "sample clotted"}),
            observation("text", "718-7", valueString="UNABLE TO REPORT"),
            observation("concept", "751-8", valueCodeableConcept={"text": "see comment"}),
            observation("none", "731-0"),
            observation("censored", "789-8", valueQuantity={"value": 1, "comparator": "<", "unit": "10*12/L"}),
            observation("err", "4544-3", 40, "%", status="entered-in-error"),
            observation("cancel", "787-2", 90, "fL", status="cancelled"),
            observation("noval", "785-6", valueQuantity={"unit": "pg"}),
        )
    )
    assert sorted(_one(read).document["results"]) == ["platelets"]
    assert [(u.id, u.reason) for u in read.unused] == [
        ("absent", "wbc: no value: dataAbsentReason sample clotted"),
        ("text", "hemoglobin: the value is text ('UNABLE TO REPORT'), not a quantity"),
        ("concept", "neutrophils: the value is valueCodeableConcept, not valueQuantity"),
        ("none", "lymphocytes: no value (no valueQuantity)"),
        ("censored", "rbc: the value is censored (< 1); only an exact value can be interpreted"),
        ("err", "hematocrit: status entered-in-error: the result is withdrawn"),
        ("cancel", "mcv: status cancelled: the result is withdrawn"),
        ("noval", "mch: valueQuantity has no value"),
    ]


def test_non_final_statuses_are_labelled():
    read = read_fhir(
        bundle(
            report("r", ["Observation/a", "Observation/b", "Observation/c"], status="preliminary"),
            observation("a", "777-3", 250, "10*3/uL", status="preliminary"),
            observation("b", "718-7", 13, "g/dL", status="amended"),
            {**observation("c", "6690-2", 5, "10*9/L"), "status": "registered"},
        )
    )
    assert _one(read).non_final == ["report: preliminary", "platelets: preliminary", "wbc: registered"]


def test_a_withdrawn_report_is_unused():
    read = read_fhir(
        bundle(report("r", ["Observation/a"], status="entered-in-error"), observation("a", "777-3", 250, "10*3/uL"))
    )
    assert read.cbcs == []
    assert [(u.id, u.reason) for u in read.unused] == [("r", "status entered-in-error: the report is withdrawn")]


def test_a_second_result_for_one_analyte_is_unused_not_mixed_in():
    read = read_fhir(
        bundle(
            report("r", ["Observation/a", "Observation/b"]),
            observation("a", "777-3", 250, "10*3/uL"),
            observation("b", "26515-7", 90, "10*3/uL"),
        )
    )
    assert _one(read).document["results"]["platelets"]["value"] == 250.0
    assert [(u.id, u.reason) for u in read.unused] == [
        ("b", "platelets: a second platelets result in this CBC; Observation/a was used")
    ]


def test_the_ucum_code_wins_over_the_unit_text_and_an_unknown_code_falls_back_to_the_text():
    read = read_fhir(
        bundle(
            report("r", ["Observation/a", "Observation/b", "Observation/c"]),
            observation(
                "a",
                "777-3",
                valueQuantity={
                    "value": 250,
                    "unit": "x10*9/L",
                    "system": "http://unitsofmeasure.org",
                    "code": "10*9/L",
                },
            ),
            observation(
                "b",
                "718-7",
                valueQuantity={"value": 13, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL{Hb}"},
            ),
            observation(
                "c", "6690-2", valueQuantity={"value": 5, "unit": "K/uL", "system": "http://local", "code": "KUL"}
            ),
        )
    )
    cbc = _one(read)
    assert {k: v["unit"] for k, v in cbc.document["results"].items()} == {
        "platelets": "10*9/L",
        "hemoglobin": "g/dL",
        "wbc": "K/uL",
    }
    assert cbc.locations["results.platelets.unit"].endswith("(Observation/a).valueQuantity.code")
    assert cbc.locations["results.hemoglobin.unit"].endswith("(Observation/b).valueQuantity.unit")


def test_an_unknown_unit_is_passed_on_for_the_engine_to_name():
    cbc = _one(read_fhir(observation("a", "777-3", 250, "furlongs")))
    assert cbc.document["results"]["platelets"] == {"value": 250.0, "unit": "furlongs"}
    assert cbc.locations["results.platelets.unit"] == "Observation(Observation/a).valueQuantity.code"


def test_rdw_cv_in_fl_is_a_different_measurement_and_is_unused():
    """clinical-rules §1 v2: 788-0 is RDW-CV in %; a width in fL sent under 788-0 cannot be converted."""
    read = read_fhir(
        bundle(
            report("r", ["Observation/a", "Observation/b"]),
            observation("a", "777-3", 250, "10*3/uL"),
            observation("b", "788-0", 45, "fL"),
        )
    )
    assert sorted(_one(read).document["results"]) == ["platelets"]
    assert read.unused[0].id == "b" and read.unused[0].reason.startswith("rdw: unit 'fL' cannot be used for rdw")


def test_rdw_sd_21000_5_in_fl_is_its_own_analyte():
    """clinical-rules §1 v2: "21000-5 is RDW-SD in fL ... Accept RDW-SD as its own analyte `rdw_sd` (fL)"."""
    read = read_fhir(
        bundle(
            report("r", ["Observation/a", "Observation/b"]),
            observation("a", "777-3", 250, "10*3/uL"),
            observation("b", "21000-5", 45, "fL"),
        )
    )
    assert _one(read).document["results"]["rdw_sd"] == {"value": 45, "unit": "fL"}
    assert read.unused == []


def test_a_value_without_a_unit_is_a_bare_number_in_the_canonical_unit():
    cbc = _one(read_fhir(observation("a", "777-3", valueQuantity={"value": 250})))
    assert cbc.document["results"]["platelets"] == 250.0


def test_the_reference_range_is_the_first_normal_one_for_everyone_in_the_value_unit():
    ranges = [
        {"low": quantity(100), "high": quantity(200), "appliesTo": [{"text": "neonates"}]},
        {"low": quantity(1, "10*9/L"), "high": quantity(2, "10*9/L"), "type": {"coding": [{"code": "treatment"}]}},
        {
            "low": quantity(150000, "/uL"),
            "high": quantity(400000, "/uL"),
            "type": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/referencerange-meaning", "code": "normal"}]
            },
        },
    ]
    cbc = _one(read_fhir(observation("a", "777-3", 250, "10*3/uL", referenceRange=ranges)))
    assert cbc.document["results"]["platelets"]["reference_range"] == {"low": 150.0, "high": 400.0}
    assert cbc.locations["results.platelets.reference_range.low"] == (
        "Observation(Observation/a).referenceRange[2].low.value"
    )


def test_a_range_with_one_bound_or_text_only():
    one = _one(read_fhir(observation("a", "751-8", 0.4, "10*9/L", referenceRange=[{"low": quantity(2.0)}])))
    assert one.document["results"]["neutrophils"]["reference_range"] == {"low": 2.0, "high": None}
    text = _one(read_fhir(observation("a", "751-8", 0.4, "10*9/L", referenceRange=[{"text": "2.0-7.0"}])))
    assert "reference_range" not in text.document["results"]["neutrophils"]


def test_an_inverted_laboratory_range_is_passed_on_to_be_set_aside_and_said_so():
    # clinical-rules §2 v2: the engine sets an implausible range aside with a note on every path, so the
    # reader passes it on (and still lists it as not used)
    read = read_fhir(
        observation("a", "4544-3", 43, "%", referenceRange=[{"low": quantity(46, "%"), "high": quantity(38, "%")}])
    )
    assert _one(read).document["results"]["hematocrit"] == {
        "value": 43.0,
        "unit": "%",
        "reference_range": {"low": 46.0, "high": 38.0},
    }
    assert [u.as_dict() for u in read.unused] == [
        {
            "resource_type": "Observation",
            "id": "a",
            "path": "Observation(Observation/a).referenceRange[0]",
            "reason": "hematocrit: the laboratory's range is inverted (low 46, high 38); it was set aside and the "
            "fallback range applies",
        }
    ]


# --- patient and time ------------------------------------------------------------------------------


def test_patient_id_prefers_the_mr_identifier_then_the_id():
    with_mrn = read_fhir(
        bundle(patient("p", mrn="MRN-7"), observation("o", "777-3", 250, "10*3/uL", subject={"reference": "Patient/p"}))
    )
    without = read_fhir(
        bundle(
            patient("p", identifier=[{"value": "SSN-NOT-USED"}]),
            observation("o", "777-3", 250, "10*3/uL", subject={"reference": "Patient/p"}),
        )
    )
    assert _one(with_mrn).document["patient"] == {"id": "MRN-7"}
    assert _one(with_mrn).locations["patient.id"] == "Bundle.entry[0].resource(Patient/p).identifier[1].value"
    assert _one(without).document["patient"] == {"id": "p"}


def test_a_subject_given_by_identifier_only_gives_the_patient_id():
    cbc = _one(read_fhir(observation("o", "777-3", 250, "10*3/uL", subject={"identifier": {"value": "MRN-9"}})))
    assert cbc.document["patient"] == {"id": "MRN-9"}


def test_gender_other_is_unknown_sex_and_a_partial_birth_date_gives_no_age():
    cbc = _one(
        read_fhir(
            bundle(
                patient("p", gender="other", birth="1970"),
                observation(
                    "o",
                    "777-3",
                    250,
                    "10*3/uL",
                    subject={"reference": "Patient/p"},
                    effectiveDateTime="2026-01-01T00:00:00Z",
                ),
            )
        )
    )
    assert cbc.document["patient"] == {"id": "p", "sex": "unknown"}


def test_effective_period_start_is_the_collection_time_and_a_date_alone_is_not():
    period = _one(
        read_fhir(observation("o", "777-3", 250, "10*3/uL", effectivePeriod={"start": "2026-01-01T07:00:00Z"}))
    )
    assert period.document["collected_at"] == "2026-01-01T07:00:00Z"
    assert period.locations["collected_at"] == "Observation(Observation/o).effectivePeriod.start"
    day = _one(
        read_fhir(
            bundle(
                patient("p", birth="1970-01-01"),
                observation(
                    "o", "777-3", 250, "10*3/uL", subject={"reference": "Patient/p"}, effectiveDateTime="2026-01-01"
                ),
            )
        )
    )
    assert "collected_at" not in day.document
    assert day.document["patient"] == {"id": "p"}  # no collection time: the birth date cannot give an age


def test_a_panel_observation_with_components_is_read_like_one_with_members():
    def component(code, value, unit, **extra):
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": quantity(value, unit),
            **extra,
        }

    panel = observation(
        "cbc",
        "58410-2",
        effectiveDateTime="2026-02-01T09:00:00Z",
        status="preliminary",
        component=[
            component("777-3", 18, "10*3/uL", referenceRange=[{"low": quantity(150), "high": quantity(400)}]),
            component("2345-7", 5.1, "mmol/L"),
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                "dataAbsentReason": {"text": "haemolysed"},
            },
        ],
    )
    read = read_fhir(panel)
    cbc = _one(read)
    assert cbc.document["results"] == {
        "platelets": {"value": 18.0, "unit": "10*3/uL", "reference_range": {"low": 150.0, "high": 400.0}}
    }
    assert cbc.observations[0].path == "Observation(Observation/cbc).component[0]"
    assert cbc.locations["results.platelets.value"] == "Observation(Observation/cbc).component[0].valueQuantity.value"
    assert cbc.non_final == ["platelets: preliminary"]
    assert [(u.path, u.reason) for u in read.unused] == [
        ("Observation(Observation/cbc).component[2]", "hemoglobin: no value: dataAbsentReason haemolysed")
    ]


def test_a_critical_interpretation_is_handed_on_and_others_are_not():
    # clinical-rules §3 v2: Observation.interpretation LL / HH / AA (HL7 v3 ObservationInterpretation) is the
    # laboratory's critical flag; L and H are not critical and the service flags them itself.
    def coded(code: str) -> list[dict]:
        return [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": code}]}
        ]

    read = read_fhir(
        bundle(
            report("r", ["Observation/a", "Observation/b", "Observation/c"]),
            observation("a", "751-8", 0.9, "10*9/L", interpretation=coded("LL")),
            observation("b", "718-7", 8.0, "g/dL", interpretation=coded("AA")),
            observation("c", "731-0", 0.9, "10*9/L", interpretation=coded("L")),
        )
    )
    document = _one(read).document
    assert document["laboratory_flags"] == {"neutrophils": "LL", "hemoglobin": "AA"}
