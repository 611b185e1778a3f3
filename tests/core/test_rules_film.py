"""clinical-rules §10 v2 (the differential and the blood film) and §8 v2 (pseudothrombocytopenia narrowed).

Every expected value comes from the rules: blasts > 0 or film.blasts_seen -> blasts_reported, immediate
[S20], aplastic assessment not_applicable; platelets < 150 and anaemia (§4) and schistocytes > 1 % (or
present / many) -> thrombotic_microangiopathy_pattern, immediate [S25], with the PLASMIC items [S26];
nucleated red cells > 0 in a patient older than 28 days with a cytopenia -> mentioned in the cytopenia
findings' detail with a film-review suggestion.
"""

from __future__ import annotations

from typing import Any

import pytest

from labservice.adapters.cbc_schema import CBC_SCHEMA
from tests.core.rules_helpers import cbc, female, finding, interpret, lesion, male, not_assessed

P = pytest.param
BLASTS = "blasts_reported"
TMA = "thrombotic_microangiopathy_pattern"
PSEUDO = "possible_pseudothrombocytopenia"


def run(doc: dict[str, Any]) -> dict[str, Any]:
    """The document through the request schema (as every input path checks it), then the engine. The
    helpers' results without a unit are sent as bare numbers (the canonical unit)."""
    sent = {
        **doc,
        "results": {
            key: result["value"] if result.get("unit") is None and result.get("reference_range") is None else result
            for key, result in doc["results"].items()
        },
    }
    return interpret(CBC_SCHEMA.load(sent))


def with_film(doc: dict[str, Any], **film: Any) -> dict[str, Any]:
    doc["film"] = film
    return doc


def with_context(doc: dict[str, Any], **context: Any) -> dict[str, Any]:
    doc["context"] = context
    return doc


def words_outside_sources(answer: dict[str, Any]) -> str:
    """Every text of an answer a reader sees, without the cited source titles."""
    aplastic = answer["aplastic_anemia"]
    parts = [answer["summary"], aplastic.get("text") or "", aplastic.get("caveat") or ""]
    for f in answer["findings"]:
        parts += [f["title"], f["detail"]]
    parts += [n["reason"] for n in answer["not_assessed"]]
    return " ".join(parts).lower()


# --- blasts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blasts", "present"),
    [
        P(0.0, False, id="clinical-rules §10 v2: blasts 0 % -> not reported"),
        P(0.5, True, id="clinical-rules §10 v2: blasts 0.5 % (> 0) -> blasts_reported"),
        P(17.0, True, id="clinical-rules §10 v2: blasts 17 % -> blasts_reported"),
    ],
)
def test_blasts_percent_above_zero(blasts: float, present: bool) -> None:
    answer = run(cbc(female(), full=True, blasts_percent=blasts))
    assert (finding(answer, BLASTS) is not None) is present
    assert (answer["urgency"] == "immediate") is present  # §9 v2: blasts reported -> immediate


@pytest.mark.parametrize(
    ("seen", "present"),
    [
        P(True, True, id="clinical-rules §10 v2: film.blasts_seen true -> blasts_reported"),
        P(False, False, id="clinical-rules §10 v2: film.blasts_seen false -> not reported"),
    ],
)
def test_blasts_seen_on_the_film(seen: bool, present: bool) -> None:
    answer = run(with_film(cbc(female(), full=True), blasts_seen=seen))
    assert (finding(answer, BLASTS) is not None) is present


def test_blasts_are_described_never_diagnosed_and_never_read_as_aplastic() -> None:
    """The issue's MIMIC example (2105-05-13 08:30): WBC 35.9, platelets 14, Hb 8.9, 17 % blasts and
    schistocytes must not read as aplastic anaemia (clinical-rules §6 v2, §10 v2)."""
    doc = cbc(male(60), wbc=35.9, platelets=14.0, hemoglobin=8.9, blasts_percent=17.0)
    doc = with_film(doc, schistocytes="present")
    answer = run(doc)
    blasts = finding(answer, BLASTS)
    assert blasts is not None
    assert "blasts reported on the differential" in blasts["detail"].lower()
    assert "acute leukaemia must be excluded" in blasts["detail"].lower()
    assert answer["urgency"] == "immediate"
    assert "blasts_reported" in answer["urgency_reasons"]
    assert answer["aplastic_anemia"]["assessment"] == "not_applicable"
    assert answer["aplastic_anemia"]["caveat"] is None  # §6 v2: no aplastic-anaemia caveat
    assert "aplastic" not in words_outside_sources(answer)
    assert finding(answer, TMA) is not None  # platelets < 150, anaemia and schistocytes present


def test_blasts_after_chemotherapy_are_not_very_severe_aplastic_criteria() -> None:
    """The issue: WBC 0.3 with 10 % blasts read as "very severe aplastic anaemia" (clinical-rules §6, §10 v2)."""
    answer = run(cbc(female(), wbc=0.3, neutrophils=0.1, platelets=8.0, hemoglobin=7.5, blasts_percent=10.0))
    assert answer["aplastic_anemia"]["assessment"] == "not_applicable"
    assert "aplastic" not in words_outside_sources(answer)
    assert "severe_aplastic_criteria" not in answer["urgency_reasons"]


def test_without_blasts_the_aplastic_assessment_is_unchanged() -> None:
    answer = run(cbc(female(), wbc=1.0, neutrophils=0.1, platelets=8.0, hemoglobin=7.5, blasts_percent=0.0))
    assert answer["aplastic_anemia"]["assessment"] != "not_applicable"


# --- thrombotic-microangiopathy pattern ---------------------------------------------------------


def tma_doc(platelets: float = 100.0, hemoglobin: float | None = 9.0, **film: Any) -> dict[str, Any]:
    return with_film(cbc(female(), full=True, platelets=platelets, hemoglobin=hemoglobin), **film)


@pytest.mark.parametrize(
    ("percent", "present"),
    [
        P(0.9, False, id="clinical-rules §10 v2: schistocytes 0.9 % -> no pattern"),
        P(1.0, False, id="clinical-rules §10 v2: schistocytes 1.0 % (on the bound, > 1 needed) -> no pattern"),
        P(1.1, True, id="clinical-rules §10 v2: schistocytes 1.1 % -> pattern"),
    ],
)
def test_schistocyte_percentage_bound(percent: float, present: bool) -> None:
    answer = run(tma_doc(schistocytes_percent=percent))
    assert (finding(answer, TMA) is not None) is present
    assert (answer["urgency"] == "immediate") is present


@pytest.mark.parametrize(
    ("grade", "present"),
    [
        P("none", False, id="clinical-rules §10 v2: schistocytes none -> no pattern"),
        P("present", True, id="clinical-rules §10 v2: schistocytes present -> pattern"),
        P("many", True, id="clinical-rules §10 v2: schistocytes many -> pattern"),
    ],
)
def test_schistocyte_grades(grade: str, present: bool) -> None:
    assert (finding(run(tma_doc(schistocytes=grade)), TMA) is not None) is present


@pytest.mark.parametrize(
    ("platelets", "present"),
    [
        P(149.9, True, id="clinical-rules §10 v2: platelets 149.9 (< 150) -> pattern"),
        P(150.0, False, id="clinical-rules §10 v2: platelets 150 (on the bound) -> no pattern"),
        P(150.1, False, id="clinical-rules §10 v2: platelets 150.1 -> no pattern"),
    ],
)
def test_platelet_bound_of_the_pattern(platelets: float, present: bool) -> None:
    assert (finding(run(tma_doc(platelets=platelets, schistocytes="present")), TMA) is not None) is present


def test_pattern_needs_anaemia_and_schistocytes_alone_are_described_only() -> None:
    """clinical-rules §10 v2: schistocytes with counts that do not meet the pattern are described only
    (female Hb 12.5 is above the WHO cut-off 12.0, §4)."""
    answer = run(tma_doc(hemoglobin=12.5, schistocytes="present"))
    assert finding(answer, TMA) is None
    assert "plasmic" not in answer
    assert answer["film"]["schistocytes"] == "present"
    assert "described only" in answer["film"]["text"]
    assert answer["urgency"] != "immediate"


def test_pattern_not_assessed_when_a_part_is_missing() -> None:
    """Missing data is not assessed, never normal: schistocytes reported without haemoglobin, or low
    platelets with anaemia and no film (clinical-rules §10 v2; api-contract v2: a rule whose input is
    missing lists it as not assessed)."""
    no_hb = run(tma_doc(hemoglobin=None, schistocytes="present"))
    assert finding(no_hb, TMA) is None
    assert not_assessed(no_hb, TMA)["needs"] == ["hemoglobin"]
    no_film = run(cbc(female(), full=True, platelets=100.0, hemoglobin=9.0))
    assert not_assessed(no_film, TMA)["needs"] == ["film.schistocytes"]
    normal = run(cbc(female(), full=True))
    assert not_assessed(normal, TMA) is None  # counts that cannot make the pattern: nothing to decide


# --- PLASMIC -----------------------------------------------------------------------------------


def plasmic_doc(platelets: float = 20.0, mcv: float = 85.0, retic: float | None = 3.0, **context: Any) -> dict:
    doc = cbc(female(), full=True, platelets=platelets, hemoglobin=8.0, mcv=mcv)
    if retic is not None:
        doc["results"]["reticulocytes_percent"] = {"value": retic, "unit": "%"}
    defaults = {"active_cancer": False, "transplant": False, "inr": 1.2, "creatinine_mg_dl": 1.0}
    return with_context(with_film(doc, schistocytes="many"), **{**defaults, **context})


def plasmic(doc: dict) -> dict:
    answer = run(doc)
    assert finding(answer, TMA) is not None
    return answer["plasmic"]


def test_plasmic_all_seven_items_met_is_high_risk() -> None:
    """clinical-rules §10 v2 [S26]: one point each; 6-7 high risk."""
    score = plasmic(plasmic_doc())
    assert score["points"] == 7
    assert set(score["items"].values()) == {"met"}
    assert score["not_assessed"] == []
    assert score["risk"] == "high"


@pytest.mark.parametrize(
    ("changes", "item", "state"),
    [
        P({"platelets": 29.9}, "platelets", "met", id="clinical-rules §10 v2: platelets 29.9 (< 30) -> met"),
        P(
            {"platelets": 30.0},
            "platelets",
            "not_met",
            id="clinical-rules §10 v2: platelets 30 (on the bound) -> not met",
        ),
        P({"platelets": 30.1}, "platelets", "not_met", id="clinical-rules §10 v2: platelets 30.1 -> not met"),
        P({"mcv": 89.9}, "mcv", "met", id="clinical-rules §10 v2: MCV 89.9 (< 90) -> met"),
        P({"mcv": 90.1}, "mcv", "not_met", id="clinical-rules §10 v2: MCV 90.1 -> not met"),
        P({"inr": 1.51}, "inr", "not_met", id="clinical-rules §10 v2: INR 1.51 -> not met"),
        P({"creatinine_mg_dl": 2.01}, "creatinine", "not_met", id="clinical-rules §10 v2: creatinine 2.01 -> not met"),
        P({"mcv": 90.0}, "mcv", "not_met", id="clinical-rules §10 v2: MCV 90 (on the bound) -> not met"),
        P({"inr": 1.49}, "inr", "met", id="clinical-rules §10 v2: INR 1.49 (< 1.5) -> met"),
        P({"inr": 1.5}, "inr", "not_met", id="clinical-rules §10 v2: INR 1.5 (on the bound) -> not met"),
        P({"creatinine_mg_dl": 1.99}, "creatinine", "met", id="clinical-rules §10 v2: creatinine 1.99 (< 2.0) -> met"),
        P(
            {"creatinine_mg_dl": 2.0},
            "creatinine",
            "not_met",
            id="clinical-rules §10 v2: creatinine 2.0 (on the bound) -> not met",
        ),
        P({"active_cancer": True}, "no_active_cancer", "not_met", id="clinical-rules §10 v2: active cancer -> not met"),
        P(
            {"active_cancer": None},
            "no_active_cancer",
            "not_assessed",
            id="clinical-rules §10 v2: active cancer not stated -> not assessed",
        ),
        P({"transplant": True}, "no_transplant", "not_met", id="clinical-rules §10 v2: transplant -> not met"),
        P({"inr": None}, "inr", "not_assessed", id="clinical-rules §10 v2: INR not sent -> not assessed"),
    ],
)
def test_plasmic_item_bounds(changes: dict, item: str, state: str) -> None:
    counts = {k: v for k, v in changes.items() if k in ("platelets", "mcv")}
    context = {k: v for k, v in changes.items() if k not in counts}
    score = plasmic(plasmic_doc(**counts, **context))
    assert score["items"][item] == state


@pytest.mark.parametrize(
    ("retic", "context", "state"),
    [
        P(2.6, {}, "met", id="clinical-rules §10 v2: reticulocytes 2.6 % (> 2.5) -> haemolysis met"),
        P(
            2.5,
            {},
            "not_assessed",
            id="clinical-rules §10 v2: reticulocytes 2.5 % alone, other markers not sent -> not assessed",
        ),
        P(
            2.5,
            {"haptoglobin_undetectable": False, "indirect_bilirubin_mg_dl": 2.0},
            "not_met",
            id="clinical-rules §10 v2: all three markers sent, none met "
            "(2.5 %, haptoglobin seen, bilirubin 2.0) -> not met",
        ),
        P(
            2.5,
            {"haptoglobin_undetectable": False, "indirect_bilirubin_mg_dl": 2.1},
            "met",
            id="clinical-rules §10 v2: indirect bilirubin 2.1 (> 2.0) -> met",
        ),
        P(
            2.4,
            {"haptoglobin_undetectable": False, "indirect_bilirubin_mg_dl": 1.9},
            "not_met",
            id="clinical-rules §10 v2: reticulocytes 2.4 %, bilirubin 1.9, haptoglobin seen -> not met",
        ),
        P(
            None,
            {"haptoglobin_undetectable": True},
            "met",
            id="clinical-rules §10 v2: haptoglobin undetectable alone -> met",
        ),
        P(None, {}, "not_assessed", id="clinical-rules §10 v2: no haemolysis marker sent -> not assessed"),
    ],
)
def test_plasmic_haemolysis_item(retic: float | None, context: dict, state: str) -> None:
    assert plasmic(plasmic_doc(retic=retic, **context))["items"]["hemolysis"] == state


@pytest.mark.parametrize(
    ("context", "points", "risk"),
    [
        P(
            {"inr": 1.5, "creatinine_mg_dl": 2.0, "active_cancer": True},
            4,
            "low",
            id="clinical-rules §10 v2: 4 points -> low",
        ),
        P(
            {"inr": 1.5, "creatinine_mg_dl": 2.0},
            5,
            "intermediate",
            id="clinical-rules §10 v2: 5 points -> intermediate",
        ),
        P({"inr": 1.5}, 6, "high", id="clinical-rules §10 v2: 6 points -> high"),
    ],
)
def test_plasmic_bands(context: dict, points: int, risk: str) -> None:
    score = plasmic(plasmic_doc(**context))
    assert (score["points"], score["risk"]) == (points, risk)


def test_plasmic_gives_no_band_while_an_item_is_not_assessed() -> None:
    """clinical-rules §10 v2: points not assessed are never counted as 0 or 1; the band only when every
    item is known."""
    score = plasmic(plasmic_doc(creatinine_mg_dl=None))
    assert score["points"] == 6
    assert score["risk"] is None
    assert score["not_assessed"] == [{"item": "creatinine", "needs": ["context.creatinine_mg_dl"]}]


# --- nucleated red cells -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nrbc", "age_years", "mentioned"),
    [
        P(0.0, 34, False, id="clinical-rules §10 v2: NRBC 0 -> not mentioned"),
        P(1.0, 34, True, id="clinical-rules §10 v2: NRBC 1 (> 0) with thrombocytopenia -> mentioned"),
        P(5.0, 27 / 365.25, False, id="clinical-rules §10 v2: 27 days old -> not mentioned"),
        P(5.0, 28 / 365.25, False, id="clinical-rules §10 v2: 28 days old (not older than 28 days) -> not mentioned"),
        P(5.0, 29 / 365.25, True, id="clinical-rules §10 v2: 29 days old -> mentioned"),
    ],
)
def test_nrbc_with_a_cytopenia(nrbc: float, age_years: float, mentioned: bool) -> None:
    doc = cbc(female(age_years), platelets=90.0, nrbc_per_100_wbc=nrbc)
    detail = finding(run(doc), "thrombocytopenia")["detail"]
    assert ("leucoerythroblastic picture calls for a film review" in detail) is mentioned


def test_nrbc_without_a_cytopenia_adds_no_finding() -> None:
    """clinical-rules §10 v2: no new finding code for nucleated red cells."""
    answer = run(cbc(female(), full=True, nrbc_per_100_wbc=3.0))
    assert answer["findings"] == []


# --- §8 v2 pseudothrombocytopenia --------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "present"),
    [
        P(
            with_film(cbc(female(), wbc=13.2, hemoglobin=14.0, platelets=40.0, lesions=[]), schistocytes="present"),
            False,
            id="clinical-rules §8 v2 (the issue): platelets 40, WBC 13.2 H and schistocytes -> not suggested",
        ),
        P(
            cbc(female(), wbc=13.2, hemoglobin=14.0, platelets=40.0, lesions=[]),
            False,
            id="clinical-rules §8 v2: WBC flagged H -> not isolated",
        ),
        P(
            with_film(cbc(female(), full=True, platelets=120.0, lesions=[]), schistocytes_percent=0.5),
            False,
            id="clinical-rules §8 v2: schistocytes 0.5 % (> 0) reported -> not suggested",
        ),
        P(
            with_film(cbc(female(), full=True, platelets=120.0, lesions=[]), schistocytes_percent=0.0),
            True,
            id="clinical-rules §8 v2: schistocytes 0 % (not above 0) -> not reported, still suggested",
        ),
        P(
            with_film(cbc(female(), full=True, platelets=120.0, lesions=[]), schistocytes="none"),
            True,
            id="clinical-rules §8 v2: schistocytes none -> still isolated with no bleeding signs",
        ),
        P(
            with_film(cbc(female(), full=True, platelets=120.0, lesions=[]), blasts_seen=True),
            False,
            id="clinical-rules §8 v2: blasts seen -> not suggested",
        ),
        P(
            cbc(female(), full=True, platelets=120.0, lesions=[], blasts_percent=2.0),
            False,
            id="clinical-rules §8 v2: blasts 2 % -> not suggested",
        ),
        P(
            with_film(cbc(female(), full=True, platelets=120.0, lesions=[]), platelet_count_confirmed=True),
            False,
            id="clinical-rules §8 v2: the film confirms the count -> not suggested",
        ),
        P(
            with_film(cbc(female(), full=True, platelets=120.0, clumps=True), platelet_count_confirmed=True),
            False,
            id="clinical-rules §8 v2: clumps but the film confirms the count -> not suggested",
        ),
        P(
            with_film(cbc(female(), full=True, platelets=120.0, clumps=True), platelet_count_confirmed=False),
            True,
            id="clinical-rules §8 v2: clumps, film does not confirm -> suggested",
        ),
        P(
            with_film(cbc(female(), wbc=13.2, platelets=40.0), platelet_clumps=True, schistocytes="present"),
            True,
            id="clinical-rules §8 v2: film.platelet_clumps (same as specimen) always suggests it",
        ),
        P(
            cbc(female(), wbc=6.0, hemoglobin=14.0, platelets=120.0, lesions=[]),
            True,
            id="clinical-rules §8 v2: WBC and Hb sent inside their ranges, skin clear -> suggested",
        ),
        P(
            cbc(female(), neutrophils=3.5, hemoglobin=14.0, platelets=120.0, lesions=[]),
            True,
            id="clinical-rules §8 v2: neutrophils (instead of WBC) and Hb inside their ranges -> suggested",
        ),
        P(
            cbc(female(), wbc=6.0, platelets=120.0, lesions=[]),
            False,
            id="clinical-rules §8 v2: haemoglobin not sent -> isolation not known",
        ),
        P(
            cbc(female(), full=True, platelets=120.0, lesions=[lesion("petechiae", 1.5)]),
            False,
            id="clinical-rules §8 v2: a haemorrhagic lesion -> bleeding sign",
        ),
    ],
)
def test_pseudothrombocytopenia_narrowed(doc: dict, present: bool) -> None:
    assert (finding(run(doc), PSEUDO) is not None) is present


# --- bad input names its field or line ---------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        P({"film": {"schistocytes": "lots"}}, ("film", "schistocytes"), id="a grade outside none/present/many"),
        P({"film": {"schistocytes_percent": 101}}, ("film", "schistocytes_percent"), id="a percentage above 100"),
        P({"film": {"blasts_seen": "yes"}}, ("film", "blasts_seen"), id="a boolean as text"),
        P({"context": {"inr": "1.2"}}, ("context", "inr"), id="a number as text"),
        P({"film": {"unknown": True}}, ("film", "unknown"), id="an unknown film field"),
    ],
)
def test_bad_film_or_context_is_a_422_naming_the_field(extra: dict, path: tuple[str, str]) -> None:
    from marshmallow import ValidationError

    with pytest.raises(ValidationError) as caught:
        CBC_SCHEMA.load({"results": {"platelets": 120}, **extra})
    assert path[1] in caught.value.messages[path[0]]


def test_a_csv_schistocyte_word_that_is_not_a_grade_names_the_line_and_column() -> None:
    import io

    from labservice.batch import BatchOptions, run_batch

    out = io.StringIO()
    text = "sample_id,platelets,hemoglobin,schistocytes\nS1,90,9,OCCASIONAL\nS2,90,9,lots\n"
    run_batch(io.BytesIO(text.encode()), csv_out=out, options=BatchOptions())
    lines = out.getvalue().splitlines()
    assert "thrombotic_microangiopathy_pattern" in lines[1]  # OCCASIONAL = present (clinical-rules §10 v2)
    assert "line 3, column schistocytes: 'lots' is not a schistocyte grade" in lines[2]
