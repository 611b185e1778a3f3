"""§8 laboratory pitfalls: EDTA pseudothrombocytopenia, gestational thrombocytopenia."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import PETECHIAE, cbc, female, finding, interpret, lesion, pregnant

P = pytest.param
PSEUDO = "possible_pseudothrombocytopenia"
GEST = "gestational_thrombocytopenia_possible"


@pytest.mark.parametrize(
    ("doc", "present"),
    [
        P(
            cbc(female(), full=True, platelets=100.0, clumps=True),
            True,
            id="§8 platelet clumps reported -> smear/citrate",
        ),
        P(
            cbc(female(), full=True, platelets=40.0, hemoglobin=9.0, clumps=True),
            True,
            id="§8 clumps trigger even when not isolated",
        ),
        P(
            cbc(female(), full=True, platelets=250.0, clumps=True),
            True,
            id="§8 clumps alone (engine convention: clumps OR isolated thrombocytopenia)",
        ),
        # clinical-rules §8 v2: "skin not sent is not 'no bleeding signs'" (was suggested in v1).
        P(
            cbc(female(), full=True, platelets=120.0),
            False,
            id="§8 v2 isolated thrombocytopenia, no skin data: not suggested",
        ),
        P(
            cbc(female(), full=True, platelets=120.0, clumps=False),
            False,
            id="§8 v2 isolated thrombocytopenia, clumps stated absent, no skin data: not suggested",
        ),
        P(
            cbc(female(), full=True, platelets=120.0, lesions=[]),
            True,
            id="§8 v2 isolated thrombocytopenia, skin examination sent with no lesion",
        ),
        P(
            cbc(female(), full=True, platelets=120.0, clumps=False, lesions=[]),
            True,
            id="§8 v2 isolated thrombocytopenia, clumps stated absent, skin sent clear",
        ),
        P(
            cbc(female(), full=True, platelets=120.0, lesions=[lesion(None, 1.5, blanching=True)]),
            True,
            id="§8 isolated thrombocytopenia, only a blanching lesion (not a bleeding sign)",
        ),
        P(cbc(female(), full=True, platelets=149.9, lesions=[]), True, id="§8 isolated: 149.9"),
        P(cbc(female(), full=True, platelets=150.0), False, id="§8 platelets 150: no thrombocytopenia"),
        P(
            cbc(female(), full=True, platelets=120.0, lesions=[PETECHIAE]),
            False,
            id="§8 bleeding sign (non-blanching petechiae) -> not suggested",
        ),
        P(cbc(female(), full=True, platelets=120.0, hemoglobin=11.0), False, id="§8 not isolated: anaemia present"),
        P(cbc(female(), full=True, platelets=120.0, wbc=3.5), False, id="§8 not isolated: leukopenia"),
        P(cbc(female(), full=True, platelets=120.0, neutrophils=1.4), False, id="§8 not isolated: neutropenia"),
        P(
            cbc(female(), full=True, platelets=120.0, hemoglobin=None),
            False,
            id="§8 anaemia not assessed (Hb missing) -> not shown isolated",
        ),
        P(
            cbc(female(), full=True, platelets=120.0, wbc=None, neutrophils=None),
            False,
            id="§8 white lineage not assessed -> not shown isolated",
        ),
    ],
)
def test_pseudothrombocytopenia(doc: dict, present: bool) -> None:
    assert (finding(interpret(doc), PSEUDO) is not None) is present


@pytest.mark.parametrize(
    ("patient", "plt", "extra", "present"),
    [
        P(pregnant(2), 69.9, {}, False, id="§8 gestational: 69.9 < 70 not suggested"),
        P(pregnant(2), 70.0, {}, True, id="§8 gestational: 70 on bound"),
        P(pregnant(2), 110.0, {}, True, id="§8 gestational: 110"),
        P(pregnant(3), 149.9, {}, True, id="§8 gestational: 149.9"),
        P(pregnant(1), 150.0, {}, False, id="§8 gestational: 150 not thrombocytopenia"),
        P(pregnant(None), 120.0, {}, True, id="§8 gestational: trimester unknown"),
        P(female(30, pregnant=False), 120.0, {}, False, id="§8 gestational: not pregnant"),
        P(female(30), 120.0, {}, False, id="§8 gestational: pregnancy not stated = not pregnant"),
        P(
            pregnant(3),
            120.0,
            {"hemoglobin": 10.9},
            False,
            id="§8 gestational: anaemia (T3 Hb 10.9 < 11.0) -> rest not normal",
        ),
        P(pregnant(2), 120.0, {"hemoglobin": 10.9}, True, id="§8 gestational: T2 Hb 10.9 is not anaemia (cut 10.5)"),
        P(pregnant(2), 120.0, {"wbc": 3.5}, False, id="§8 gestational: leukopenia -> not normal"),
        P(pregnant(2), 120.0, {"neutrophils": 1.4}, False, id="§8 gestational: neutropenia -> not normal"),
        P(pregnant(2), 120.0, {"hemoglobin": None}, False, id="§8 gestational: anaemia not assessed (Hb missing)"),
        P(
            pregnant(2),
            120.0,
            {"wbc": None, "neutrophils": None},
            False,
            id="§8 gestational: white lineage not assessed",
        ),
    ],
)
def test_gestational_thrombocytopenia(patient: dict, plt: float, extra: dict, present: bool) -> None:
    ans = interpret(cbc(patient, full=True, platelets=plt, **extra))
    assert (finding(ans, GEST) is not None) is present


def test_pseudothrombocytopenia_suggests_smear_and_citrate() -> None:
    # §8 "suggest a smear review and a repeat count in a citrate tube"
    f = finding(interpret(cbc(female(), full=True, platelets=90.0, clumps=True)), PSEUDO)
    text = (f["title"] + " " + f["detail"]).lower()
    assert "citrate" in text
    assert "smear" in text or "film" in text


def test_gestational_mentions_usually_above_110() -> None:
    # §8 "gestational thrombocytopenia is common (usually > 110)"
    f = finding(interpret(cbc(pregnant(3), full=True, platelets=120.0)), GEST)
    assert "110" in f["detail"]


def test_gestational_range_is_written_from_the_two_rules_without_inventing_a_bound() -> None:
    # §8 "platelets 70-149 ... gestational thrombocytopenia", read as >= 70 and < 150 (strict, as
    # thresholds.csv says): the text names both table values, no "149" computed as 150 - 1.
    f = finding(interpret(cbc(pregnant(3), full=True, platelets=120.0)), GEST)
    # clinical-rules §8 v2: "the rest of the CBC normal" is said, not "no other cytopenia"
    assert "Pregnancy with platelets 120 x10^9/L (from 70 to below 150) and the rest of the CBC normal" in f["detail"]


# --- clinical-rules §8 v2: gestational thrombocytopenia narrowed -------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "present"),
    [
        P({}, True, id="§8 v2 gestational: Hb, WBC, neutrophils, lymphocytes all inside their ranges"),
        P({"wbc": None}, True, id="§8 v2 gestational: WBC or neutrophils sent (neutrophils only)"),
        P({"neutrophils": None}, True, id="§8 v2 gestational: WBC or neutrophils sent (WBC only)"),
        P({"lymphocytes": 0.4}, False, id="§8 v2 gestational: beside grade-3 lymphopenia -> not suggested"),
        P({"lymphocytes": 0.99}, False, id="§8 v2 gestational: lymphocytes 0.99 below 1.0 (flag L) -> not suggested"),
        P({"lymphocytes": 1.0}, True, id="§8 v2 gestational: lymphocytes 1.0 on the bound -> inside"),
        P({"wbc": 31.0}, False, id="§8 v2 gestational: beside a critical WBC (> 30) -> not suggested"),
        P({"wbc": 10.1}, False, id="§8 v2 gestational: WBC 10.1 above its range (H) -> not suggested"),
        P({"mcv": 102.0}, False, id="§8 v2 gestational: MCV 102 above 83-101 -> not suggested"),
        P({"mcv": 101.0}, True, id="§8 v2 gestational: MCV 101 on the bound -> inside"),
        P({"hemoglobin": 11.5}, True, id="§8 v2 gestational: mildly low Hb 11.5 (L) above the T2 cut-off 10.5"),
        P({"hemoglobin": 15.1}, False, id="§8 v2 gestational: Hb 15.1 above the female range (H) -> not suggested"),
        P({"mchc": 38.1}, False, id="§8 v2 gestational: another finding (sample integrity) -> not suggested"),
        P(
            {"lesions": [lesion("purpura", 5.0, palpable=True)]},
            False,
            id="§8 v2 gestational: another finding (palpable purpura, vasculitis pattern) with every count in range",
        ),
    ],
)
def test_gestational_thrombocytopenia_needs_the_rest_of_the_cbc_normal(extra: dict, present: bool) -> None:
    # §8 v2 "The rest of the CBC normal" means haemoglobin and WBC (or neutrophils) sent, every other analyte
    # sent inside its range (or only mildly low haemoglobin above the pregnancy cut-off), no critical value and
    # no other finding but thrombocytopenia.
    ans = interpret(cbc(pregnant(2), full=True, platelets=120.0, **extra))
    assert (finding(ans, GEST) is not None) is present


def test_male_marked_pregnant_is_refused_naming_the_field() -> None:
    # §8 v2 "a male patient marked pregnant is a 422"; the JSON schema names patient.pregnant
    from marshmallow import ValidationError

    from labservice.adapters.cbc_schema import CBC_SCHEMA

    with pytest.raises(ValidationError) as raised:
        CBC_SCHEMA.load({"patient": {"sex": "male", "pregnant": True}, "results": {"platelets": 120}})
    assert "pregnant" in raised.value.messages["patient"]
    # female, unknown sex, or a male not marked pregnant are accepted
    for patient in (
        {"sex": "female", "pregnant": True},
        {"sex": "unknown", "pregnant": True},
        {"sex": "male", "pregnant": False},
    ):
        CBC_SCHEMA.load({"patient": patient, "results": {"platelets": 120}})


# --- clinical-rules §8 v2: sample integrity -------------------------------------------------------------------

SAMPLE = "sample_integrity_check"


@pytest.mark.parametrize(
    ("results", "present"),
    [
        P({"mchc": 38.0}, False, id="§8 v2 MCHC 38.0 sent: on the bound, not above"),
        P({"mchc": 38.1}, True, id="§8 v2 MCHC 38.1 sent: above 38.0"),
        P({"mchc": 37.9}, False, id="§8 v2 MCHC 37.9 sent"),
        P({"hemoglobin": 13.64, "hematocrit": 26.8}, True, id="§8 v2 issue 13: Hb 13.64 / Hct 26.8 (MCHC ~51)"),
        P({"hemoglobin": 15.2, "hematocrit": 40.0}, False, id="§8 v2 computed MCHC 15.2/40 = 38.0 on the bound"),
        P({"hemoglobin": 15.24, "hematocrit": 40.0}, True, id="§8 v2 computed MCHC 15.24/40 = 38.1"),
        P(
            {"hemoglobin": 13.64, "hematocrit": 26.8, "mchc": 34.0},
            False,
            id="§8 v2 MCHC as sent wins over the computed one",
        ),
        P({"hemoglobin": 13.64}, False, id="§8 v2 no MCHC and no haematocrit: nothing to compute"),
    ],
)
def test_sample_integrity_check(results: dict, present: bool) -> None:
    ans = interpret(cbc(female(), **results))
    assert (finding(ans, SAMPLE) is not None) is present
    if present:
        # §8 v2 "It asks for soon and adds a film-review suggestion" [S29]
        assert ans["urgency"] == "soon" and SAMPLE in ans["urgency_reasons"]
        f = finding(ans, SAMPLE)
        assert "film" in f["detail"] and "[S29]" in f["detail"]
        assert "lipaemia" in f["detail"] and "cold agglutinins" in f["detail"]
        assert any("Barnes" in source for source in f["sources"])


def test_sample_integrity_text_of_the_issue_example_is_rounded() -> None:
    # §1 v2 text "never prints a raw float": 13.64 / 26.8 x 100 = 50.8955..., written to 3 figures
    f = finding(interpret(cbc(female(), hemoglobin=13.64, hematocrit=26.8)), SAMPLE)
    assert "MCHC 50.9 g/dL computed" in f["detail"] and "50.8955" not in f["detail"]
    assert f["evidence"]["mchc_computed"] is True
