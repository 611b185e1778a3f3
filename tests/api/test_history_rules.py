"""The rules over a patient's stored history, through POST /api/v1/interpretations on SQLite and PostgreSQL.

Expected values by hand from clinical-rules.md v2 and the rule tables, for an adult woman with Hb 13.5 g/dL,
WBC 6.0 and neutrophils 3.0 (inside the §2 fallback ranges) unless a test says otherwise:
- §3 v2 (lines 99-105): "a **new** critical value asks for `immediate` urgency (§9), with the reason
  `new_critical_value`"; "A critical value of the same analyte in the same direction already present in the
  patient's most recent stored CBC before this one, within the delta window (§12), is **known**: it stays `LL`/`HH`
  and `critical_value` (with `evidence.known: true`) but asks only for `urgent`"; "Without a stored history (no
  patient id, or `store=false` ...) a critical value is new." Critical limits (§3): platelets < 20, neutrophils
  < 0.5, WBC < 2.0 and > 30. The delta window: 7 days by default (DELTA_WINDOW_DAYS), a previous CBC at most that
  much earlier (as the existing delta checks).
- §12 v2 MCV delta (line "MCV changed by more than 3.0 fL from the previous CBC within 72 hours"): finding
  `possible_sample_misidentification`, urgency `soon`.
- §12 v2 HIT pattern (the 4Ts items, [S27]): baseline = the highest count from the day heparin started; fall =
  (baseline - this count) / baseline; nadir = the lowest count since heparin started; onset = the first CBC after
  the start with a fall of 30 % or more; fall item "2 points for a fall > 50 % with a nadir >= 20; 0 points for a
  fall < 30 % or a nadir < 10; otherwise 1 point"; timing item "2 points when the onset is 5-10 days after heparin
  started, or within 1 day with heparin in the previous 30 days; 0 points when the onset is within 4 days without
  recent heparin; otherwise (after day 10, or no onset yet) 1 point"; thrombosis and other causes "listed as not
  assessed"; 2 + 2: `heparin_induced_thrombocytopenia_possible`, urgency `immediate`. Days are counted from the
  day heparin started (day 0), as the 4Ts count them.
"""

from __future__ import annotations

from typing import Any

import pytest

URL = "/api/v1/interpretations"


def cbc(patient: str | None, collected_at: str | None, platelets: float | None = 250, **results: Any) -> dict[str, Any]:
    """An adult woman's CBC, normal unless `results` says otherwise (context=... goes to the context object)."""
    context = results.pop("context", None)
    doc: dict[str, Any] = {"results": {"hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0}}
    if platelets is not None:
        doc["results"]["platelets"] = platelets
    doc["results"].update(results)
    doc["patient"] = {"sex": "female", "age_years": 40}
    if patient is not None:
        doc["patient"]["id"] = patient
    if collected_at is not None:
        doc["collected_at"] = collected_at
    if context is not None:
        doc["context"] = context
    return doc


def day(n: int, hour: int = 8) -> str:
    return f"2026-11-{n:02d}T{hour:02d}:00:00Z"


def post(client, body: Any, query: str = "") -> Any:
    response = client.post(f"{URL}{query}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def codes(answer: dict[str, Any]) -> list[str]:
    return [finding["code"] for finding in answer["findings"]]


def finding(answer: dict[str, Any], code: str) -> dict[str, Any]:
    return next(f for f in answer["findings"] if f["code"] == code)


@pytest.fixture
def client(make_app, database_url: str):
    return make_app(DATABASE_URL=database_url).test_client()


# -- §3 v2: known and new critical values -------------------------------------------------------


def test_a_critical_value_already_in_the_previous_cbc_is_known_and_urgent(client) -> None:
    """§3 v2: platelets 15 then 12 (both < 20, LL): the second is known -> `urgent`, evidence.known true."""
    first = post(client, cbc("K1", day(1), 15))
    assert first["urgency"] == "immediate" and "new_critical_value" in first["urgency_reasons"]
    assert finding(first, "critical_value")["evidence"]["known"] is False
    second = post(client, cbc("K1", day(2), 12))
    assert second["analytes"]["platelets"]["flag"] == "LL"
    assert "critical_value" in codes(second)
    assert finding(second, "critical_value")["evidence"]["known"] is True
    assert second["urgency"] == "urgent"
    assert "known_critical_value" in second["urgency_reasons"]
    assert "new_critical_value" not in second["urgency_reasons"]
    assert second["stored"]["referral_id"] is not None


@pytest.mark.parametrize(
    ("hour", "urgency", "known"),
    [
        (7, "urgent", True),  # 6 days 23 hours after: within the 7-day window
        (8, "urgent", True),  # exactly 7 days after: on the window's bound (at most 7 days earlier)
        (9, "immediate", False),  # 7 days 1 hour after: outside the window, so new
    ],
)
def test_known_only_within_the_delta_window(client, hour: int, urgency: str, known: bool) -> None:
    """§3 v2: "within the delta window (§12)", 7 days by default."""
    post(client, cbc("K2", day(1), 15))
    answer = post(client, cbc("K2", day(8, hour), 15))
    assert answer["urgency"] == urgency
    assert finding(answer, "critical_value")["evidence"]["known"] is known


def test_a_configured_delta_window_decides_what_is_known(make_app, database_url: str) -> None:
    """§3 v2 / §12: the window is configurable: with 2 days, a critical value 3 days earlier is not known."""
    client = make_app(DATABASE_URL=database_url, DELTA_WINDOW_DAYS=2).test_client()
    post(client, cbc("K3", day(1), 15))
    assert post(client, cbc("K3", day(3), 15))["urgency"] == "urgent"  # 2 days: on the bound
    assert post(client, cbc("K3", day(6), 15))["urgency"] == "immediate"  # 3 days after day 3


def test_the_same_analyte_in_the_other_direction_is_new(client) -> None:
    """§3 v2: same analyte *in the same direction*: WBC 40 (> 30, HH) then WBC 1.5 (< 2.0, LL) is new."""
    post(client, cbc("K4", day(1), 250, wbc=40.0, neutrophils=30.0))
    answer = post(client, cbc("K4", day(2), 250, wbc=1.5, neutrophils=1.0))
    assert answer["analytes"]["wbc"]["flag"] == "LL"
    assert answer["urgency"] == "immediate"
    assert finding(answer, "critical_value")["evidence"]["known"] is False


def test_another_analyte_is_new(client) -> None:
    """§3 v2: platelets 15 (LL) then neutrophils 0.3 (< 0.5, LL) with normal platelets: the new one is new."""
    post(client, cbc("K5", day(1), 15))
    answer = post(client, cbc("K5", day(2), 250, neutrophils=0.3))
    assert answer["urgency"] == "immediate" and "new_critical_value" in answer["urgency_reasons"]


def test_one_new_critical_value_beside_a_known_one_keeps_immediate(client) -> None:
    """§3 v2: platelets 15 known, neutrophils 0.3 new: a new critical value is there, so `immediate`."""
    post(client, cbc("K6", day(1), 15))
    answer = post(client, cbc("K6", day(2), 14, neutrophils=0.3))
    assert answer["urgency"] == "immediate"
    assert finding(answer, "critical_value")["evidence"]["known"] is False


def test_only_the_most_recent_previous_cbc_counts(client) -> None:
    """§3 v2: "already present in the patient's most recent stored CBC before this one": 15, then 200, then 15."""
    post(client, cbc("K7", day(1), 15))
    post(client, cbc("K7", day(2), 200))
    assert post(client, cbc("K7", day(3), 15))["urgency"] == "immediate"


def test_without_stored_history_a_critical_value_is_new(client) -> None:
    """§3 v2: with store=false the history is not consulted at all; without a patient id there is none."""
    post(client, cbc("K8", day(1), 15))
    not_stored = post(client, cbc("K8", day(2), 12), "?store=false")
    assert not_stored["urgency"] == "immediate" and "new_critical_value" in not_stored["urgency_reasons"]
    assert "known" not in finding(not_stored, "critical_value")["evidence"]
    anonymous = post(client, cbc(None, day(2), 12))
    assert anonymous["urgency"] == "immediate"


def test_two_cbcs_of_one_request_compare_with_each_other(client) -> None:
    """§3 v2: the previous CBC may be an earlier one of the same list request (stored in the same call)."""
    first, second = post(client, [cbc("K9", day(1), 15), cbc("K9", day(2), 15)])
    assert (first["urgency"], second["urgency"]) == ("immediate", "urgent")


# -- §12 v2: the MCV delta check --------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "found"),
    [
        (90.0, 92.9, False),  # 2.9 fL: below
        (90.0, 93.0, False),  # 3.0 fL: on the bound, not "more than 3.0"
        (88.1, 91.1, False),  # 3.0 fL again, where the float difference is 2.9999999999999716 (§1 v2)
        (90.0, 93.1, True),  # 3.1 fL: above
        (90.0, 86.9, True),  # a fall of 3.1 fL: a change either way
    ],
)
def test_mcv_change_above_3_fl(client, before: float, after: float, found: bool) -> None:
    """§12 v2: "MCV changed by more than 3.0 fL from the previous CBC within 72 hours": urgency `soon`."""
    post(client, cbc("M1", day(1), mcv=before))
    answer = post(client, cbc("M1", day(2), mcv=after))
    assert ("possible_sample_misidentification" in codes(answer)) is found
    assert answer["urgency"] == ("soon" if found else "routine")
    if found:
        f = finding(answer, "possible_sample_misidentification")
        assert "unless the patient was transfused" in f["detail"]
        assert any(source.startswith("[S30] Miller I") for source in f["sources"])
        assert "possible_sample_misidentification" in answer["urgency_reasons"]


@pytest.mark.parametrize(("hour", "found"), [(7, True), (8, True), (9, False)])
def test_mcv_previous_within_72_hours(client, hour: int, found: bool) -> None:
    """§12 v2: "from the previous CBC within 72 hours": 71 h, 72 h (on the bound) and 73 h after."""
    post(client, cbc("M2", day(1), mcv=90.0))
    answer = post(client, cbc("M2", day(4, hour), mcv=95.0))
    assert ("possible_sample_misidentification" in codes(answer)) is found


# -- §12 v2: the heparin-induced thrombocytopenia pattern -------------------------------------

START = "2026-11-01T10:00:00Z"  # heparin started on day 0 = 1 November


def hit(answer: dict[str, Any]) -> dict[str, Any]:
    return answer["hit_4ts"]


def heparin(recent: bool | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"heparin_started_at": START}
    if recent is not None:
        context["heparin_in_previous_30_days"] = recent
    return context


def series(client, patient: str, counts: list[tuple[str, float]], recent: bool | None = None) -> dict[str, Any]:
    """Store the counts in order (each with the heparin context); the last answer."""
    answer: dict[str, Any] = {}
    for when, count in counts:
        answer = post(client, cbc(patient, when, count, context=heparin(recent)))
    return answer


def test_fall_and_timing_2_plus_2_is_the_hit_pattern(client) -> None:
    """§12 v2: baseline 250 on the day heparin started (1 November, before the start time), 100 on 7 November (day
    6): fall 60 % > 50 with nadir 100 >= 20 -> 2 points; onset on day 6 (within days 5-10) -> 2 points."""
    answer = series(client, "H1", [(day(1, 8), 250), (day(7), 100)])
    block = hit(answer)
    assert block["items"]["fall"]["points"] == 2
    assert block["items"]["fall"]["baseline"] == 250 and block["items"]["fall"]["fall_percent"] == 60
    assert block["items"]["timing"]["points"] == 2 and block["items"]["timing"]["onset_day"] == 6
    assert block["not_assessed"] == ["thrombosis", "other_causes"]
    assert block["pattern"] is True
    assert "heparin_induced_thrombocytopenia_possible" in codes(answer)
    assert answer["urgency"] == "immediate"
    assert "heparin_induced_thrombocytopenia_possible" in answer["urgency_reasons"]
    f = finding(answer, "heparin_induced_thrombocytopenia_possible")
    assert "the remaining items decide" in f["detail"]
    # The worklist line names it before the engine's findings (after the delta findings: 250 -> 100 is a drop).
    reason = client.get(f"/api/v1/referrals/{answer['stored']['referral_id']}").get_json()["reason"]
    assert reason.startswith("platelet drop, new cytopenia, heparin induced thrombocytopenia possible, ")
    assert any(source.startswith("[S23] Lo GK") for source in f["sources"])


@pytest.mark.parametrize(
    ("count", "points"),
    [
        (124, 2),  # fall 50.4 % > 50, nadir 124 >= 20
        (125, 1),  # fall exactly 50 %: not > 50, not < 30 -> 1
        (175, 1),  # fall exactly 30 %: not < 30 -> 1
        (176, 0),  # fall 29.6 % < 30 -> 0
    ],
)
def test_the_fall_item_on_its_percentage_bounds(client, count: float, points: int) -> None:
    """§12 v2 fall item from baseline 250 (day 0): "> 50 %" for 2, "< 30 %" for 0, otherwise 1."""
    answer = series(client, "H2", [(day(1, 8), 250), (day(7), count)])
    assert hit(answer)["items"]["fall"]["points"] == points
    assert ("heparin_induced_thrombocytopenia_possible" in codes(answer)) is (points == 2)


@pytest.mark.parametrize(
    ("count", "points"),
    [
        (21, 2),  # fall 79 %, nadir 21 >= 20
        (20, 2),  # nadir exactly 20: ">= 20"
        (19, 1),  # nadir 19: not >= 20, not < 10 -> 1
        (10, 1),  # nadir exactly 10: not < 10 -> 1
        (9, 0),  # nadir 9 < 10 -> 0
    ],
)
def test_the_fall_item_on_its_nadir_bounds(client, count: float, points: int) -> None:
    """§12 v2 fall item from baseline 100: "a nadir >= 20" for 2, "a nadir < 10" for 0, otherwise 1."""
    answer = series(client, "H3", [(day(1, 8), 100), (day(7), count)])
    assert hit(answer)["items"]["fall"]["points"] == points
    assert hit(answer)["items"]["fall"]["nadir"] == count


@pytest.mark.parametrize(
    ("onset_day", "recent", "points"),
    [
        (4, False, 0),  # within 4 days without recent heparin
        (4, True, 1),  # within 4 days with recent heparin, not within 1 day: otherwise -> 1
        (4, None, None),  # recent heparin not stated: 0 or 1 -> not assessed
        (5, False, 2),  # days 5-10
        (10, False, 2),
        (11, False, 1),  # after day 10
        (1, True, 2),  # within 1 day with heparin in the previous 30 days
        (1, False, 0),
        (2, True, 1),
    ],
)
def test_the_timing_item(client, onset_day: int, recent: bool | None, points: int | None) -> None:
    """§12 v2 timing item, onset = the first CBC after the start with a fall >= 30 % (250 -> 100, 60 %)."""
    answer = series(client, f"H4-{onset_day}-{recent}", [(day(1, 8), 250), (day(1 + onset_day), 100)], recent)
    timing = hit(answer)["items"]["timing"]
    assert timing["onset_day"] == onset_day
    assert timing["points"] == points
    if points is None:
        assert "timing" in hit(answer)["not_assessed"]


def test_the_onset_is_the_first_fall_of_30_percent(client) -> None:
    """§12 v2: onset = the first CBC after the start with a fall of 30 % or more: 250 (day 0), 180 on day 2 (28 %),
    170 on day 3 (32 %: the onset), 100 on day 7: onset day 3 without recent heparin -> timing 0, no pattern."""
    answer = series(client, "H5", [(day(1, 8), 250), (day(3), 180), (day(4), 170), (day(8), 100)], False)
    timing = hit(answer)["items"]["timing"]
    assert timing["onset_day"] == 3 and timing["points"] == 0
    assert hit(answer)["items"]["fall"]["points"] == 2
    assert "heparin_induced_thrombocytopenia_possible" not in codes(answer)


def test_no_onset_yet_scores_1(client) -> None:
    """§12 v2: "otherwise (after day 10, or no onset yet) 1 point": 250 -> 200 (20 %)."""
    answer = series(client, "H6", [(day(1, 8), 250), (day(7), 200)], False)
    assert hit(answer)["items"]["timing"]["points"] == 1
    assert hit(answer)["items"]["fall"]["points"] == 0


def test_hit_reads_every_cbc_since_heparin_started_not_only_the_window(make_app, database_url: str) -> None:
    """§12 v2: "over all the patient's stored CBCs since heparin started (not only the delta window)": with a 2-day
    window the day-0 baseline 250 still counts for the count of day 6."""
    client = make_app(DATABASE_URL=database_url, DELTA_WINDOW_DAYS=2).test_client()
    answer = series(client, "H7", [(day(1, 8), 250), (day(7), 100)])
    assert hit(answer)["items"]["fall"]["baseline"] == 250
    assert hit(answer)["pattern"] is True


def test_a_count_before_the_day_heparin_started_is_not_the_baseline(client) -> None:
    """§12 v2: "Baseline = the highest count from the day heparin started": 400 the day before is not it."""
    post(client, cbc("H8", "2026-10-31T08:00:00Z", 400))
    answer = series(client, "H8", [(day(1, 8), 250), (day(7), 100)])
    assert hit(answer)["items"]["fall"]["baseline"] == 250


def test_a_single_count_since_heparin_cannot_score_a_fall(client) -> None:
    """Missing data is "not assessed", never normal: no earlier count since day 0, so no fall to score."""
    answer = series(client, "H9", [(day(7), 100)])
    assert hit(answer)["items"]["fall"]["points"] is None
    assert "fall" in hit(answer)["not_assessed"]


def test_heparin_without_stored_history_is_not_assessed(client) -> None:
    """§12 v2: the rules "run where a CBC is stored with a patient id": store=false lists every item as not
    assessed (the contract's `hit_4ts` appears when heparin exposure is given)."""
    series(client, "H10", [(day(1, 8), 250)])
    answer = post(client, cbc("H10", day(7), 100, context=heparin()), "?store=false")
    assert hit(answer)["assessed"] is False
    assert hit(answer)["not_assessed"] == ["fall", "timing", "thrombosis", "other_causes"]
    assert "heparin_induced_thrombocytopenia_possible" not in codes(answer)


def test_a_stored_cbc_without_a_collection_time_has_no_previous_cbc(client) -> None:
    """§3 v2 and §12 v2: a CBC with no collection time is compared with nothing (as the delta checks): its critical
    value is new, and its 4Ts fall and timing items are not assessed."""
    post(client, cbc("H12", day(1, 8), 15, context=heparin()))
    answer = post(client, cbc("H12", None, 12, context=heparin()))
    assert answer["urgency"] == "immediate"
    assert finding(answer, "critical_value")["evidence"]["known"] is False
    assert hit(answer)["assessed"] is False
    assert hit(answer)["not_assessed"] == ["fall", "timing", "thrombosis", "other_causes"]


def test_a_heparin_start_without_an_offset_is_refused(client) -> None:
    response = client.post(URL, json=cbc("H11", day(7), 100, context={"heparin_started_at": "2026-11-01T10:00:00"}))
    assert response.status_code == 422
    assert "context.heparin_started_at" in response.get_json()["errors"]


# -- the worklist order (issue 13 item 5) -------------------------------------------------------


def test_the_worklist_puts_immediate_first_and_the_most_severe_first_within_an_urgency(client) -> None:
    """Issue 13 item 5: "the worklist puts `immediate` first and, within an urgency, the most severe first (critical
    before non-critical, then lowest platelets / neutrophils), not merely the newest". Collection times run against
    that order (the newest is the least severe) so a newest-first order would fail.
    - immediate: W-CRIT-PLT (platelets 15 < 20, critical), W-CRIT-ANC (neutrophils 0.3 < 0.5, critical, platelets
      250), W-FLAG (fever with a non-blanching rash: a red flag, §7, no critical value);
    - soon (§9: thrombocytopenia < 100, neutropenia < 1.0): W-BOTH (platelets 80, neutrophils 0.8), W-PLT (80, 3.0),
      W-ANC (250, 0.8)."""
    rash = {"fever": True, "lesions": [{"type": "petechiae", "blanching": False}]}
    docs = [
        cbc("W-CRIT-PLT", day(1), 15),
        cbc("W-CRIT-ANC", day(2), 250, neutrophils=0.3),
        {**cbc("W-FLAG", day(3), 250), "skin": rash},
        cbc("W-BOTH", day(4), 80, neutrophils=0.8),
        cbc("W-PLT", day(5), 80),
        cbc("W-ANC", day(6), 250, neutrophils=0.8),
    ]
    answers = post(client, docs)
    assert [a["urgency"] for a in answers] == ["immediate"] * 3 + ["soon"] * 3
    body = client.get("/api/v1/referrals").get_json()
    assert [item["patient_id"] for item in body["items"]] == [
        "W-CRIT-PLT",
        "W-CRIT-ANC",
        "W-FLAG",
        "W-BOTH",
        "W-PLT",
        "W-ANC",
    ]
    page = client.get("/dashboard/?urgency=immediate&urgency=soon").get_data(as_text=True)
    shown = [name for name in (d["patient"]["id"] for d in docs) if f'data-patient="{name}"' in page]
    assert sorted(shown, key=lambda name: page.index(f'data-patient="{name}"')) == [
        "W-CRIT-PLT",
        "W-CRIT-ANC",
        "W-FLAG",
        "W-BOTH",
        "W-PLT",
        "W-ANC",
    ]


# -- the other storing paths ------------------------------------------------------------------


def test_hl7v2_messages_apply_the_history_rules(client) -> None:
    """§12 v2 MCV delta over HL7 v2 (the nhapi ORU fixture: MCV 80.9 fl, OBR-7 2005-09-21 05:20): the same
    message a day later with MCV 85.0 is a change of 4.1 fL > 3.0 within 72 hours -> `soon` at least."""
    from tests.adapters.hl7v2.samples import ER7, NHAPI_ORU, nth_of, replace_field, text

    first = text(NHAPI_ORU)
    mcv = nth_of(NHAPI_ORU, "OBX", lambda line: "|NM|MCV|" in line)
    second = replace_field(replace_field(first, ("OBR", 1), 7, "200509220520"), ("OBX", mcv), 5, "85.0")
    for body in (first, second):
        response = client.post("/api/v1/hl7v2/interpret", data=body.encode(), content_type=ER7)
        assert response.status_code == 200, response.get_data(as_text=True)
    [answer] = response.get_json()["interpretations"]
    assert "possible_sample_misidentification" in codes(answer)
    assert finding(answer, "possible_sample_misidentification")["evidence"]["change_fl"] == 4.1
