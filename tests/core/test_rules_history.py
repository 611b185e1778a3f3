"""labservice.core.history: the rules over a patient's stored history as pure functions over plain rows.

The storing paths and both databases are tested in tests/api/test_history_rules.py and
tests/batch/test_keep_history.py; here the cases a request cannot easily reach. Expected values from
clinical-rules.md v2:
- §12 v2 HIT: "Baseline = the highest count from the day heparin started"; "nadir = the lowest count since heparin
  started, this one included"; "onset = the first CBC after the start with a fall of 30 % or more"; timing "2
  points when the onset is 5-10 days after heparin started ... 0 points when the onset is within 4 days without
  recent heparin"; "The answer shows each item's points and the items not assessed".
- §12 v2 MCV: "MCV changed by more than 3.0 fL from the previous CBC within 72 hours".
- §3 v2: a known critical value "asks only for `urgent`"; a new one `immediate` (§9).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

from labservice.core.history import (
    PastCbc,
    critical_marks,
    history_outcome,
    hit,
    known_critical,
    mcv_delta,
    with_history,
)
from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import render_interpretations
from labservice.core.ruleset import default_ruleset

RS = default_ruleset()
WEEK = timedelta(days=7)


def at(day: int, hour: int = 8, tz=UTC) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=tz)


def plt(day: int, count: float, hour: int = 8) -> PastCbc:
    return PastCbc(at(day, hour), platelets=count)


# -- HIT ---------------------------------------------------------------------------------------


def test_day_numbers_are_calendar_days_in_the_offset_the_start_was_given_in():
    """Day 0 is the day heparin started: 23:00 on 1 November at +02:00 is 21:00 UTC; a count at 23:30 UTC on
    6 November is 01:30 on 7 November at +02:00: day 6."""
    plus2 = timezone(timedelta(hours=2))
    start = datetime(2026, 11, 1, 23, 0, tzinfo=plus2)
    assert hit.day_number(start, datetime(2026, 11, 6, 23, 30, tzinfo=UTC)) == 6
    assert hit.day_number(start, datetime(2026, 11, 1, 21, 30, tzinfo=UTC)) == 0


def test_the_nadir_is_the_lowest_count_since_the_start_this_one_included():
    """§12 v2: 250 (day 0), 90 (day 5), 120 now (day 6): nadir 90; fall (250-120)/250 = 52 % > 50 with nadir
    90 >= 20: 2 points; onset = day 5 (64 %): timing 2."""
    start = at(1, 10)
    block = hit.score_4ts(plt(7, 120), [plt(1, 250), plt(6, 90)], start, None, RS)
    fall = block["items"]["fall"]
    assert (fall["nadir"], fall["fall_percent"], fall["points"]) == (90, 52, 2)
    assert block["items"]["timing"]["onset_day"] == 5 and block["items"]["timing"]["points"] == 2
    assert block["pattern"] is True and block["points"] == 4


def test_a_count_before_the_start_time_on_day_0_is_the_baseline_but_not_the_nadir():
    """§12 v2: baseline from the *day* heparin started; nadir *since* heparin started: 30 at 06:00 on day 0
    (before a 10:00 start) is neither a nadir nor an onset; the baseline is the highest, 30 vs 25 now."""
    start = at(1, 10)
    block = hit.score_4ts(plt(7, 25), [plt(1, 30, hour=6)], start, None, RS)
    fall = block["items"]["fall"]
    assert fall["baseline"] == 30 and fall["nadir"] == 25


def test_the_thrombosis_and_other_causes_items_are_always_not_assessed():
    block = hit.score_4ts(plt(7, 100), [plt(1, 250)], at(1, 10), False, RS)
    assert block["items"]["thrombosis"]["points"] is None
    assert block["items"]["other_causes"]["points"] is None
    assert block["not_assessed"] == ["thrombosis", "other_causes"]


def test_a_cbc_collected_before_heparin_started_is_not_scored():
    block = hit.score_4ts(plt(1, 250, hour=6), [], at(1, 10), None, RS)
    assert block["assessed"] is False
    assert block["not_assessed"] == ["fall", "timing", "thrombosis", "other_causes"]


def test_a_cbc_without_platelets_has_no_fall_item():
    block = hit.score_4ts(PastCbc(at(7)), [plt(1, 250)], at(1, 10), None, RS)
    assert block["items"]["fall"]["points"] is None and "fall" in block["not_assessed"]
    assert block["pattern"] is False


# -- MCV ---------------------------------------------------------------------------------------


def test_mcv_passes_over_an_earlier_cbc_without_mcv():
    """§12 v2: the previous CBC with an MCV: 90 on day 1, none on day 2 08:00, 94 on day 2 12:00: 4.0 > 3.0."""
    earlier = [PastCbc(at(1), mcv=90.0), PastCbc(at(2), platelets=200)]
    block = mcv_delta.compare(PastCbc(at(2, 12), mcv=94.0), earlier, RS)
    assert block is not None and block["finding"] is True and block["change_fl"] == 4.0 and block["hours"] == 28


def test_mcv_without_an_earlier_one_within_72_hours_is_not_assessed():
    block = mcv_delta.compare(PastCbc(at(5, 9), mcv=94.0), [PastCbc(at(2, 8), mcv=90.0)], RS)
    assert block == {"assessed": False, "reason": "no earlier CBC of this patient with an MCV within 72 hours"}


def test_no_mcv_no_block():
    assert mcv_delta.compare(PastCbc(at(2)), [PastCbc(at(1), mcv=90.0)], RS) is None


# -- known critical values and the answer -----------------------------------------------------------


def test_critical_marks_read_ll_and_hh_only():
    analytes = {"platelets": {"flag": "LL"}, "wbc": {"flag": "HH"}, "hemoglobin": {"flag": "L"}}
    assert critical_marks(analytes) == {"platelets:LL", "wbc:HH"}


def test_known_is_true_only_when_every_critical_value_is_known():
    previous = PastCbc(at(1), criticals=frozenset({"platelets:LL"}))
    both = PastCbc(at(2), criticals=frozenset({"platelets:LL", "neutrophils:LL"}))
    block = known_critical.compare(both, [previous], WEEK)
    assert block is not None
    assert block["known"] is False and block["known_values"] == ["platelets:LL"]
    assert block["new_values"] == ["neutrophils:LL"]


def answer_for(platelets: float, **more: float) -> dict:
    table = {"platelets": [platelets], "hemoglobin": [13.5], "wbc": [6.0], "neutrophils": [3.0]}
    table.update({k: [v] for k, v in more.items()})
    return render_interpretations(interpret_cbc_table(table))[0]


def test_a_known_critical_value_asks_for_urgent_and_the_summary_says_so():
    """§3 v2: platelets 15 (LL) known: `urgent` with known_critical_value's action (the urgent action of
    urgency_actions.csv), and the summary's urgency sentence follows."""
    engine = answer_for(15)
    assert engine["urgency"] == "immediate"
    cbc = PastCbc(at(2), platelets=15, criticals=critical_marks(engine["analytes"]))
    outcome = history_outcome(cbc, [PastCbc(at(1), platelets=14, criticals=cbc.criticals)], WEEK, RS)
    answer = with_history(engine, outcome, RS)
    assert answer["urgency"] == "urgent"
    assert answer["urgency_reasons"]["known_critical_value"] == RS.urgency_action("urgent")
    assert "Urgency urgent: discuss with haematology" in answer["summary"]
    assert answer["summary"].endswith("it is not a diagnosis.")
    assert engine["urgency"] == "immediate"  # the engine's answer is not changed


def test_a_lower_reason_stays_listed_under_a_higher_urgency():
    """§9: "the highest that any finding asks for": platelets 80 (< 100, soon) with the HIT pattern (immediate)
    keeps its thrombocytopenia reason."""
    engine = answer_for(80)
    outcome = history_outcome(PastCbc(at(7), platelets=80), [plt(1, 250)], WEEK, RS, heparin_started_at=at(1, 10))
    answer = with_history(engine, outcome, RS)
    assert answer["urgency"] == "immediate"
    assert list(answer["urgency_reasons"]) == [
        "thrombocytopenia_below_100",
        "heparin_induced_thrombocytopenia_possible",
    ]
    assert not math.isnan(answer["hit_4ts"]["items"]["fall"]["fall_percent"])


def test_an_outcome_that_adds_nothing_leaves_the_answer_as_it_is_and_unread() -> None:
    """No critical value to compare (known_critical None), no HIT 4Ts block, no history finding (an MCV compared
    without a change of 5 fL or more): with_history gives the engine's answer itself, and changes_answer says so
    first, so a batch job's answer held as text is not read (issue 12 item 1)."""
    from labservice.core.history.answer import changes_answer, with_history
    from labservice.core.ruleset import default_ruleset

    rs = default_ruleset()
    answer = {"urgency": "routine", "findings": [], "urgency_reasons": {}, "summary": "No finding."}
    for outcome in ({}, {"known_critical": None, "mcv": None}, {"known_critical": None, "mcv": {"finding": False}}):
        assert not changes_answer(outcome, rs)
        assert with_history(answer, outcome, rs) is answer
    assert changes_answer(
        {
            "known_critical": {
                "known": False,
                "known_values": [],
                "new_values": ["platelets:LL"],
                "previous_collected_at": None,
            }
        },
        rs,
    )
