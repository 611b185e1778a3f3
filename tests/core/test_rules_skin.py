"""§7 skin: lesion typing, haemorrhagic vs blanching, vasculitis pattern, attribution."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import (
    PETECHIAE,
    cbc,
    female,
    finding,
    interpret,
    lesion,
    text_of,
)

P = pytest.param


@pytest.mark.parametrize(
    ("size", "typ"),
    [
        P(0.5, "petechiae", id="§7 size typing: 0.5 mm petechiae (< 2)"),
        P(1.9, "petechiae", id="§7 size typing: 1.9 mm petechiae (< 2)"),
        P(2.0, "purpura", id="§7 size typing: 2 mm purpura (2-10)"),
        P(5.0, "purpura", id="§7 size typing: 5 mm purpura"),
        P(10.0, "purpura", id="§7 size typing: 10 mm purpura (on bound)"),
        P(10.1, "ecchymosis", id="§7 size typing: 10.1 mm ecchymosis (> 10)"),
        P(30.0, "ecchymosis", id="§7 size typing: 30 mm ecchymosis"),
    ],
)
def test_lesion_type_from_size(size: float, typ: str) -> None:
    ans = interpret(cbc(female(40), platelets=250.0, lesions=[lesion(None, size, site="shin")]))
    (out,) = ans["skin"]["lesions"]
    assert out["type"] == typ
    assert out["type_from_size"] is True
    assert out["hemorrhagic"] is True  # §7 petechiae, purpura, ecchymoses are non-blanching
    assert out["size_mm"] == size


def test_lesion_output_echoes_site() -> None:
    # interface (brief): skin.lesions[] = {type, hemorrhagic, type_from_size, size_mm, site}
    ans = interpret(cbc(female(40), platelets=250.0, lesions=[lesion(None, 1.0, site="shin")]))
    assert ans["skin"]["lesions"][0]["site"] == "shin"


@pytest.mark.parametrize(
    "typ",
    [
        P("petechiae", id="§7 given type petechiae kept"),
        P("purpura", id="§7 given type purpura kept"),
        P("ecchymosis", id="§7 given type ecchymosis kept"),
    ],
)
def test_given_type_is_kept(typ: str) -> None:
    ans = interpret(cbc(female(40), platelets=250.0, lesions=[lesion(typ, None)]))
    (out,) = ans["skin"]["lesions"]
    assert out["type"] == typ
    assert out["type_from_size"] is False
    assert out["hemorrhagic"] is True


def test_blanching_lesion_not_hemorrhagic_not_attributed() -> None:
    # §7 "a lesion reported as blanching is not haemorrhagic and is not attributed to platelets"
    ans = interpret(cbc(female(40), platelets=5.0, lesions=[lesion(None, 1.5, blanching=True)]))
    skin = ans["skin"]
    assert skin["lesions"][0]["hemorrhagic"] is False
    assert skin["attribution"] == "none"
    assert skin["escalate"] is False


@pytest.mark.parametrize(
    ("palpable", "present"),
    [
        P(True, True, id="§7 palpable purpura -> vasculitis_pattern"),
        P(False, False, id="§7 non-palpable purpura -> no vasculitis_pattern"),
    ],
)
def test_palpable_purpura_vasculitis_pattern(palpable: bool, present: bool) -> None:
    ans = interpret(
        cbc(female(40), platelets=250.0, lesions=[lesion("purpura", 4.0, palpable=palpable, site="buttocks")])
    )
    assert (finding(ans, "vasculitis_pattern") is not None) is present


@pytest.mark.parametrize(
    ("plt", "attribution", "escalate"),
    [
        P(5.0, "consistent", True, id="§7 attribution <20 consistent; <10 escalate (5)"),
        P(9.9, "consistent", True, id="§7 attribution: 9.9 < 10 escalate"),
        P(10.0, "consistent", False, id="§7 attribution: 10 consistent, no escalate"),
        P(19.9, "consistent", False, id="§7 attribution: 19.9 < 20 consistent"),
        P(20.0, "may_contribute", False, id="§7 attribution 20-49 may contribute (20)"),
        P(49.9, "may_contribute", False, id="§7 attribution: 49.9 may contribute"),
        P(50.0, "not_explained", False, id="§7 attribution >=50 not explained (50)"),
        P(250.0, "not_explained", False, id="§7 attribution: 250 not explained"),
    ],
)
def test_attribution_bands(plt: float, attribution: str, escalate: bool) -> None:
    skin = interpret(cbc(female(40), platelets=plt, lesions=[PETECHIAE]))["skin"]
    assert skin["attribution"] == attribution
    assert skin["escalate"] is escalate


def test_attribution_not_assessed_without_platelets() -> None:
    skin = interpret(cbc(female(40), hemoglobin=14.0, lesions=[PETECHIAE]))["skin"]
    assert skin["attribution"] == "not_assessed"
    assert skin["expected_band"] is None


@pytest.mark.parametrize(
    "lesions",
    [
        P(None, id="§7 no skin data -> attribution none"),
        P([], id="§7 empty lesion list -> attribution none"),
    ],
)
def test_attribution_none_without_lesions(lesions: list | None) -> None:
    skin = interpret(cbc(female(40), platelets=5.0, lesions=lesions))["skin"]
    assert skin["attribution"] == "none"
    assert skin["escalate"] is False


def test_not_explained_lists_other_causes() -> None:
    # §7 >= 50: "list non-thrombocytopenic causes (trauma, ..., vasculitis, infection including
    # meningococcal disease, anticoagulants ...)"
    txt = text_of(interpret(cbc(female(40), platelets=250.0, lesions=[PETECHIAE])))
    for cause in ("trauma", "vasculitis", "meningococcal", "anticoagulant", "scurvy"):
        assert cause in txt, cause


@pytest.mark.parametrize(
    ("plt", "band"),
    [
        P(9.9, "severe", id="§7 expected band <10 severe"),
        P(10.0, "spontaneous", id="§7 expected band 10-19 spontaneous (10)"),
        P(12.0, "spontaneous", id="§7 expected band: 12 spontaneous"),
        P(19.9, "spontaneous", id="§7 expected band: 19.9 spontaneous"),
        P(20.0, "minor_trauma", id="§7 expected band 20-49 minor trauma (20)"),
        P(49.9, "minor_trauma", id="§7 expected band: 49.9 minor trauma"),
        P(50.0, "none", id="§7 expected band >=50 none"),
        P(250.0, "none", id="§7 expected band: 250 none"),
    ],
)
def test_expected_band_without_skin_data(plt: float, band: str) -> None:
    skin = interpret(cbc(female(40), platelets=plt))["skin"]
    assert skin["expected_band"] == band
    assert isinstance(skin["expected_presentation"], str) and skin["expected_presentation"]


def test_expected_presentation_platelets_12_mentions_petechiae() -> None:
    # §7 e.g. platelets 12: "spontaneous petechiae and purpura expected; examine skin and mucosa"
    skin = interpret(cbc(female(40), platelets=12.0))["skin"]
    assert "petechiae" in skin["expected_presentation"].lower()


def test_expected_band_none_without_platelets() -> None:
    assert interpret(cbc(female(40), hemoglobin=14.0))["skin"]["expected_band"] is None


def test_given_type_wins_over_size() -> None:
    # §7 typing from size only "when the type is not given"
    ans = interpret(cbc(female(40), platelets=250.0, lesions=[lesion("purpura", 1.0)]))
    out = ans["skin"]["lesions"][0]
    assert out["type"] == "purpura"
    assert out["type_from_size"] is False
