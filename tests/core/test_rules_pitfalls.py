"""§8 laboratory pitfalls: EDTA pseudothrombocytopenia, gestational thrombocytopenia."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import PETECHIAE, cbc, female, finding, interpret, lesion, pregnant

P = pytest.param
PSEUDO = "possible_pseudothrombocytopenia"
GEST = "gestational_thrombocytopenia_possible"


@pytest.mark.parametrize(("doc", "present"), [
    P(cbc(female(), full=True, platelets=100.0, clumps=True), True,
      id="§8 platelet clumps reported -> smear/citrate"),
    P(cbc(female(), full=True, platelets=40.0, hemoglobin=9.0, clumps=True), True,
      id="§8 clumps trigger even when not isolated"),
    P(cbc(female(), full=True, platelets=250.0, clumps=True), True,
      id="§8 clumps alone (engine convention: clumps OR isolated thrombocytopenia)"),
    # clinical-rules §8 v2: "skin not sent is not 'no bleeding signs'" (was suggested in v1).
    P(cbc(female(), full=True, platelets=120.0), False,
      id="§8 v2 isolated thrombocytopenia, no skin data: not suggested"),
    P(cbc(female(), full=True, platelets=120.0, clumps=False), False,
      id="§8 v2 isolated thrombocytopenia, clumps stated absent, no skin data: not suggested"),
    P(cbc(female(), full=True, platelets=120.0, lesions=[]), True,
      id="§8 v2 isolated thrombocytopenia, skin examination sent with no lesion"),
    P(cbc(female(), full=True, platelets=120.0, clumps=False, lesions=[]), True,
      id="§8 v2 isolated thrombocytopenia, clumps stated absent, skin sent clear"),
    P(cbc(female(), full=True, platelets=120.0, lesions=[lesion(None, 1.5, blanching=True)]),
      True, id="§8 isolated thrombocytopenia, only a blanching lesion (not a bleeding sign)"),
    P(cbc(female(), full=True, platelets=149.9, lesions=[]), True, id="§8 isolated: 149.9"),
    P(cbc(female(), full=True, platelets=150.0), False, id="§8 platelets 150: no thrombocytopenia"),
    P(cbc(female(), full=True, platelets=120.0, lesions=[PETECHIAE]), False,
      id="§8 bleeding sign (non-blanching petechiae) -> not suggested"),
    P(cbc(female(), full=True, platelets=120.0, hemoglobin=11.0), False,
      id="§8 not isolated: anaemia present"),
    P(cbc(female(), full=True, platelets=120.0, wbc=3.5), False,
      id="§8 not isolated: leukopenia"),
    P(cbc(female(), full=True, platelets=120.0, neutrophils=1.4), False,
      id="§8 not isolated: neutropenia"),
    P(cbc(female(), full=True, platelets=120.0, hemoglobin=None), False,
      id="§8 anaemia not assessed (Hb missing) -> not shown isolated"),
    P(cbc(female(), full=True, platelets=120.0, wbc=None, neutrophils=None), False,
      id="§8 white lineage not assessed -> not shown isolated"),
])
def test_pseudothrombocytopenia(doc: dict, present: bool) -> None:
    assert (finding(interpret(doc), PSEUDO) is not None) is present


@pytest.mark.parametrize(("patient", "plt", "extra", "present"), [
    P(pregnant(2), 69.9, {}, False, id="§8 gestational: 69.9 < 70 not suggested"),
    P(pregnant(2), 70.0, {}, True, id="§8 gestational: 70 on bound"),
    P(pregnant(2), 110.0, {}, True, id="§8 gestational: 110"),
    P(pregnant(3), 149.9, {}, True, id="§8 gestational: 149.9"),
    P(pregnant(1), 150.0, {}, False, id="§8 gestational: 150 not thrombocytopenia"),
    P(pregnant(None), 120.0, {}, True, id="§8 gestational: trimester unknown"),
    P(female(30, pregnant=False), 120.0, {}, False, id="§8 gestational: not pregnant"),
    P(female(30), 120.0, {}, False, id="§8 gestational: pregnancy not stated = not pregnant"),
    P(pregnant(3), 120.0, {"hemoglobin": 10.9}, False,
      id="§8 gestational: anaemia (T3 Hb 10.9 < 11.0) -> rest not normal"),
    P(pregnant(2), 120.0, {"hemoglobin": 10.9}, True,
      id="§8 gestational: T2 Hb 10.9 is not anaemia (cut 10.5)"),
    P(pregnant(2), 120.0, {"wbc": 3.5}, False, id="§8 gestational: leukopenia -> not normal"),
    P(pregnant(2), 120.0, {"neutrophils": 1.4}, False,
      id="§8 gestational: neutropenia -> not normal"),
    P(pregnant(2), 120.0, {"hemoglobin": None}, False,
      id="§8 gestational: anaemia not assessed (Hb missing)"),
    P(pregnant(2), 120.0, {"wbc": None, "neutrophils": None}, False,
      id="§8 gestational: white lineage not assessed"),
])
def test_gestational_thrombocytopenia(patient: dict, plt: float, extra: dict,
                                      present: bool) -> None:
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
    assert "Pregnancy with platelets 120 x10^9/L (from 70 to below 150) and no other cytopenia" in f["detail"]
