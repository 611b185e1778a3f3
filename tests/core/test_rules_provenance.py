"""Every finding names its rule and source (clinical-rules.md preamble), codes are contract codes,
each appears at most once, the aplastic caveat is always present (§6) and "non-severe aplastic
anaemia" is never output (§6)."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import (
    FINDING_CODES,
    PETECHIAE,
    URGENCIES,
    cbc,
    female,
    interpret,
    lesion,
    male,
    pregnant,
    text_of,
)

P = pytest.param

DOCS = [
    P(cbc(female(), full=True), id="normal"),
    P(cbc(female(), platelets=250.0), id="platelets only"),
    P(
        cbc(
            female(),
            hemoglobin=9.0,
            wbc=1.5,
            neutrophils=0.1,
            platelets=5.0,
            reticulocytes=10.0,
            lymphocytes=0.1,
            fever=True,
            lesions=[PETECHIAE, lesion("purpura", 4.0, palpable=True)],
            clumps=True,
            marrow=(15.0, None),
        ),
        id="everything low with red flags",
    ),
    P(cbc(male(8), platelets=12.0, lesions=[PETECHIAE]), id="child petechiae"),
    P(cbc(pregnant(2), full=True, platelets=110.0), id="gestational"),
    P(cbc(female(), full=True, platelets=1200.0, wbc=35.0), id="high criticals"),
    P(cbc(female(), hemoglobin=9.0, wbc=2.5, neutrophils=0.3, platelets=30.0), id="indeterminate"),
    P(cbc(female(duffy_null=None), full=True, neutrophils=1.2), id="duffy caveat"),
    P(
        cbc(female(), full=True, hemoglobin=9.0, wbc=3.0, neutrophils=1.0, platelets=60.0, reticulocytes=80.0),
        id="not severe",
    ),
]


@pytest.mark.parametrize("doc", DOCS)
def test_findings_carry_rule_and_source(doc: dict) -> None:
    ans = interpret(doc)
    seen: list[str] = []
    for f in ans["findings"]:
        assert f["code"] in FINDING_CODES, f["code"]
        assert isinstance(f["rule"], str) and f["rule"].strip(), f["code"]
        assert any(isinstance(s, str) and s.startswith("[S") for s in f["sources"]), f["code"]
        assert isinstance(f["title"], str) and f["title"], f["code"]
        assert isinstance(f["evidence"], dict), f["code"]
        seen.append(f["code"])
    assert len(seen) == len(set(seen))  # contract: each code at most once per CBC
    aa = ans["aplastic_anemia"]
    if aa["not_applicable_reasons"]:
        # clinical-rules §6 v2: not_applicable for a reason (WBC above its range here): no caveat
        assert aa["caveat"] is None
    else:
        assert isinstance(aa["caveat"], str) and aa["caveat"].strip()
    assert "non-severe aplastic" not in text_of(ans)
    assert ans["urgency"] in URGENCIES
    assert ans["ctcae_version"] in ("5.0", "6.0")
    for na in ans.get("not_assessed", []):
        # needs lists analytes; it may be empty when what is missing is not an analyte (fever)
        assert na["reason"] and isinstance(na["needs"], list)


def test_documents_answered_in_order() -> None:
    from tests.core.rules_helpers import interpret_many

    answers = interpret_many(
        [cbc(female(), platelets=10.0), cbc(female(), platelets=250.0), cbc(female(), platelets=460.0)]
    )
    assert [a["analytes"]["platelets"]["value"] for a in answers] == [10.0, 250.0, 460.0]
