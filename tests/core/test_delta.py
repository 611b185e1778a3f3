"""labservice.core.delta.delta_checks on small tables (issue 4 §3: delta checks), table-driven.

Expected values by hand from the issue and the rule tables:
- thresholds.csv platelet_drop: a fall of 50 % or more from the previous CBC (S23, S24); fall % =
  (before − now) / before × 100, so 200 → 100 is exactly 50 % (a drop) and 200 → 101 is 49.5 % (not one);
- the default window is 7 days: a previous CBC 8 days earlier is not compared ("not assessed", never
  "no change"); a CBC without a collection time is not compared either;
- `new_cytopenia`: present now, and *decided absent* on the previous CBC; one the previous CBC could not
  assess (in its not_assessed) is not new; one already present before is not new;
- urgency ranks 0 routine … 3 immediate: higher now → escalated, equal → unchanged, lower → de-escalated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from labservice.core.delta import (
    DELTA_INPUT,
    NO_TIME,
    DeltaCbc,
    compare_with_previous,
    delta_block,
    delta_checks,
    delta_findings,
    previous_of,
)
from labservice.core.ruleset import default_ruleset

P = pytest.param
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
WEEK = pd.Timedelta(days=7)


def row(
    day: float | None,
    platelets: float | None = 200.0,
    *,
    patient: str = "P1",
    rank: int = 0,
    findings: tuple[str, ...] = (),
    not_assessed: tuple[str, ...] = (),
    ref: Any = None,
) -> dict[str, Any]:
    """One CBC for the delta tables: collected `day` days after T0 (None: no collection time)."""
    return {
        "patient": patient,
        "collected_at": None if day is None else T0 + timedelta(days=day),
        "platelets": np.nan if platelets is None else platelets,
        "urgency_rank": rank,
        "findings": list(findings),
        "not_assessed": list(not_assessed),
        "ref": ref,
    }


def table(rows: list[dict[str, Any]], index: list[int] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(DELTA_INPUT), index=index)
    frame["collected_at"] = pd.to_datetime(frame["collected_at"], utc=True)
    frame["platelets"] = frame["platelets"].astype(np.float64)
    return frame


def check(
    history: list[dict[str, Any]],
    current: list[dict[str, Any]],
    window: pd.Timedelta = WEEK,
    index: list[int] | None = None,
) -> pd.DataFrame:
    return delta_checks(table(current, index), table(history), window, default_ruleset())


def assessed(out: pd.DataFrame, position: int) -> bool:
    return not pd.isna(out["previous_collected_at"].iloc[position])


# -- platelet drop ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "now", "fall", "drop"),
    [
        P(200.0, 100.0, 50.0, True, id="200→100 is exactly 50 %: a drop (>=)"),
        P(200.0, 101.0, 49.5, False, id="200→101 is 49.5 %: no drop"),
        P(200.0, 80.0, 60.0, True, id="200→80 is 60 %"),
        P(300.0, 140.0, 53.3, True, id="300→140 is 53.3 % (rounded to 0.1)"),
        P(100.0, 100.0, 0.0, False, id="unchanged"),
        P(100.0, 250.0, -150.0, False, id="a rise is a negative fall"),
        P(40.0, 20.0, 50.0, True, id="a fall of 50 % counts whatever the count (40→20)"),
    ],
)
def test_platelet_fall_against_the_previous_cbc(before: float, now: float, fall: float, drop: bool) -> None:
    out = check([row(0, before)], [row(2, now)])
    assert assessed(out, 0)
    assert out["previous_platelets"].iloc[0] == before
    assert out["platelet_fall_percent"].iloc[0] == pytest.approx(fall)
    assert bool(out["platelet_drop"].iloc[0]) is drop


@pytest.mark.parametrize(
    ("before", "now", "shown", "drop"),
    [
        # clinical-rules §1 v2: a delta is rounded to 6 significant figures before it is compared, and a number is
        # "never [rounded] across a threshold it was compared with": 250 -> 125.1 is a fall of 49.96 %, below the
        # 50 % of platelet_drop; shown to 0.1 it would read 50.0, so it keeps its digits.
        P(250.0, 125.1, 49.96, False, id="§1 v2 49.96 % below 50: shown 49.96, not 50.0; no drop"),
        P(200.0, 100.0, 50.0, True, id="§1 v2 50 % on the threshold: a drop"),
        P(200.0, 99.98, 50.0, True, id="§1 v2 50.01 % above: shown 50.0 (not across), a drop"),
    ],
)
def test_the_fall_is_never_shown_across_the_drop_threshold(before: float, now: float, shown: float, drop: bool) -> None:
    out = check([row(0, before)], [row(2, now)])
    assert out["platelet_fall_percent"].iloc[0] == shown
    assert bool(out["platelet_drop"].iloc[0]) is drop


@pytest.mark.parametrize(
    ("before", "now"),
    [
        P(None, 50.0, id="previous CBC without platelets"),
        P(200.0, None, id="current CBC without platelets"),
        P(0.0, 0.0, id="previous count 0: no percentage"),
    ],
)
def test_no_platelet_fall_without_both_counts(before: float | None, now: float | None) -> None:
    out = check([row(0, before)], [row(2, now)])
    assert assessed(out, 0)  # still compared: the urgency and cytopenias are
    assert pd.isna(out["platelet_fall_percent"].iloc[0])
    assert not bool(out["platelet_drop"].iloc[0])


# -- the window ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days_before", "window_days", "compared"),
    [
        P(2, 7, True, id="2 days, 7-day window"),
        P(6.9, 7, True, id="6.9 days, 7-day window"),
        P(7, 7, True, id="exactly 7 days is within 7 days"),
        P(8, 7, False, id="8 days earlier: outside the 7-day window"),
        P(30, 7, False, id="30 days earlier"),
        P(8, 10, True, id="8 days with a 10-day window"),
        P(2, 1, False, id="2 days with a 1-day window"),
    ],
)
def test_window(days_before: float, window_days: int, compared: bool) -> None:
    out = check([row(0, 200.0)], [row(days_before, 80.0)], pd.Timedelta(days=window_days))
    assert assessed(out, 0) is compared
    assert bool(out["platelet_drop"].iloc[0]) is compared
    if not compared:
        assert out["urgency_change"].iloc[0] is None
        assert out["new_cytopenias"].iloc[0] == ()
        assert pd.isna(out["platelet_fall_percent"].iloc[0])


def test_the_latest_previous_cbc_is_the_one_compared() -> None:
    # day 0: 200, day 3: 150, day 5: 100 → against day 3 the fall is 33.3 % (against day 0 it would be 50 %).
    out = check([row(0, 200.0, ref="a"), row(3, 150.0, ref="b")], [row(5, 100.0)])
    assert out["previous_ref"].iloc[0] == "b"
    assert out["platelet_fall_percent"].iloc[0] == pytest.approx(33.3)
    assert not bool(out["platelet_drop"].iloc[0])


def test_a_later_cbc_in_history_is_not_a_previous_one() -> None:
    # An older CBC arriving late is compared with ITS previous CBC (day 0), not with the newer day-5 one.
    out = check([row(0, 200.0, ref="day0"), row(5, 80.0, ref="day5")], [row(3, 190.0)])
    assert out["previous_ref"].iloc[0] == "day0"
    assert out["platelet_fall_percent"].iloc[0] == pytest.approx(5.0)


def test_another_patients_cbc_is_never_compared() -> None:
    out = check([row(0, 200.0, patient="P2")], [row(2, 80.0, patient="P1")])
    assert not assessed(out, 0)
    assert not bool(out["platelet_drop"].iloc[0])


# -- no collection time ----------------------------------------------------------------------


def test_a_cbc_without_collection_time_is_not_assessed() -> None:
    out = check([row(0, 200.0)], [row(None, 80.0)])
    assert not assessed(out, 0)
    assert not bool(out["platelet_drop"].iloc[0]) and out["urgency_change"].iloc[0] is None


def test_a_previous_cbc_without_collection_time_is_not_used() -> None:
    out = check([row(None, 200.0)], [row(2, 80.0)])
    assert not assessed(out, 0)


def test_untimed_rows_of_one_patient_in_one_table_are_not_compared() -> None:
    out = check([], [row(None, 200.0), row(None, 80.0)])
    assert [assessed(out, i) for i in range(2)] == [False, False]


# -- new cytopenias --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "before_undecided", "now", "new"),
    [
        P((), (), ("thrombocytopenia",), {"thrombocytopenia"}, id="decided absent before, present now: new"),
        P(("thrombocytopenia",), (), ("thrombocytopenia",), set(), id="present before and now: not new"),
        P((), ("neutropenia",), ("neutropenia",), set(), id="not assessed before (analyte missing): not new"),
        P((), ("anemia",), ("anemia", "neutropenia"), {"neutropenia"}, id="only the decided one is new"),
        P(
            (),
            (),
            ("anemia", "leukopenia", "lymphopenia"),
            {"anemia", "leukopenia", "lymphopenia"},
            id="several new at once",
        ),
        P(("anemia",), (), (), set(), id="resolved: nothing new"),
        P(
            (),
            (),
            ("critical_value", "pancytopenia", "marrow_failure_range"),
            set(),
            id="codes that are not single cytopenias are not counted",
        ),
    ],
)
def test_new_cytopenias(
    before: tuple[str, ...], before_undecided: tuple[str, ...], now: tuple[str, ...], new: set[str]
) -> None:
    out = check([row(0, findings=before, not_assessed=before_undecided)], [row(1, findings=now)])
    assert assessed(out, 0)
    assert set(out["new_cytopenias"].iloc[0]) == new


def test_no_new_cytopenia_without_a_previous_cbc() -> None:
    out = check([row(0, findings=())], [row(9, findings=("thrombocytopenia",))])
    assert out["new_cytopenias"].iloc[0] == ()


# -- urgency change --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "now", "change"),
    [
        P(0, 2, "escalated", id="routine → urgent"),
        P(1, 3, "escalated", id="soon → immediate"),
        P(1, 1, "unchanged", id="soon → soon"),
        P(0, 0, "unchanged", id="routine → routine"),
        P(2, 1, "de-escalated", id="urgent → soon"),
        P(3, 0, "de-escalated", id="immediate → routine"),
    ],
)
def test_urgency_change(before: int, now: int, change: str) -> None:
    out = check([row(0, rank=before)], [row(1, rank=now)])
    assert out["urgency_change"].iloc[0] == change
    assert out["previous_urgency_rank"].iloc[0] == before


# -- several CBCs of one patient in one table ------------------------------------------------


def test_rows_of_one_table_are_compared_in_time_order_whatever_their_order() -> None:
    # Sent newest first: day 2 (80) then day 0 (200); the day-2 row is compared with the day-0 row.
    out = check([], [row(2, 80.0, rank=1), row(0, 200.0, rank=0)])
    assert assessed(out, 0) and not assessed(out, 1)
    assert out["previous_ref"].iloc[0] == "row 1"
    assert out["platelet_fall_percent"].iloc[0] == pytest.approx(60.0)
    assert bool(out["platelet_drop"].iloc[0])
    assert out["urgency_change"].iloc[0] == "escalated"


def test_a_chain_in_one_table_compares_each_with_its_predecessor() -> None:
    out = check([row(0, 400.0, ref="stored")], [row(4, 100.0), row(2, 300.0), row(6, 90.0)])
    assert out["previous_ref"].tolist() == ["row 1", "stored", "row 0"]
    assert out["platelet_fall_percent"].tolist() == pytest.approx([66.7, 25.0, 10.0])
    assert out["platelet_drop"].tolist() == [True, False, False]


def test_patients_in_one_table_are_kept_apart() -> None:
    out = check(
        [],
        [row(0, 200.0, patient="A"), row(1, 300.0, patient="B"), row(2, 90.0, patient="A"), row(3, 290.0, patient="B")],
    )
    assert out["previous_ref"].tolist() == [None, None, "row 0", "row 1"]
    assert out["platelet_drop"].tolist() == [False, False, True, False]


def test_the_index_of_the_current_table_is_kept() -> None:
    out = check([row(0, 200.0)], [row(2, 90.0), row(3, 300.0, patient="P9")], index=[10, 42])
    assert out.index.tolist() == [10, 42]
    assert bool(out.loc[10, "platelet_drop"]) and not bool(out.loc[42, "platelet_drop"])


def test_nothing_to_compare_gives_one_unassessed_row_per_cbc() -> None:
    out = check([], [row(0, 200.0, patient="A"), row(1, 80.0, patient="B")])
    assert len(out) == 2
    assert not out["platelet_drop"].any()
    assert out["previous_collected_at"].isna().all()


def _block(drop: bool, new: tuple[str, ...]) -> dict[str, Any]:
    return {
        "assessed": True,
        "window_days": 30,
        "platelet_drop": drop,
        "new_cytopenias": list(new),
        "platelet_fall_percent": 60.0,
        "previous": {"collected_at": "2026-11-01T08:00:00+00:00", "platelets": 250.0, "urgency": "routine"},
    }


def test_delta_findings_take_title_rule_and_sources_from_the_findings_table() -> None:
    """A fall of 50 % or more (thresholds.csv platelet_drop, S23 S24) and a new cytopenia (S24)."""
    rs = default_ruleset()
    drop, new = delta_findings(_block(True, ("thrombocytopenia",)), 100.0, rs)
    assert drop["code"] == "platelet_drop" and drop["title"] == "Platelet count fell by 50 % or more"
    assert drop["rule"] == "thresholds.csv:platelet_drop"
    assert drop["sources"] == [f"[S23] {rs.sources['S23']}", f"[S24] {rs.sources['S24']}"]
    assert drop["evidence"] == {"platelets": 100.0, "previous_platelets": 250.0, "fall_percent": 60.0}
    assert new["code"] == "new_cytopenia" and new["title"] == "New cytopenia since the previous CBC"
    assert new["sources"] == [f"[S24] {rs.sources['S24']}"]
    assert new["evidence"] == {"new": ["thrombocytopenia"]}
    assert delta_findings(_block(False, ()), 240.0, rs) == []
    assert delta_findings({"assessed": False}, 240.0, rs) == []


# -- on plain CBCs (the store's path), through the same implementation -----------------------------------------


def cbc(
    day: float | None, platelets: float, *, rank: int = 0, findings: tuple[str, ...] = (), ref: Any = None
) -> DeltaCbc:
    return DeltaCbc("P1", None if day is None else T0 + timedelta(days=day), platelets, rank, findings, (), ref)


def test_one_cbc_against_its_stored_history_gives_the_delta_block() -> None:
    """200 → 100 two days later: exactly 50 %, a drop (S23 S24); thrombocytopenia decided absent before: new;
    routine → soon: escalated. The history's CBC 9 days earlier is outside the 7-day window."""
    rs = default_ruleset()
    history = [cbc(-9, 400.0, ref="old"), cbc(0, 200.0, ref="stored")]
    [delta] = compare_with_previous([cbc(2, 100.0, rank=1, findings=("thrombocytopenia",))], history, WEEK, rs)
    assert delta is not None and delta.previous.ref == "stored"
    block = delta_block(delta, WEEK, rs)
    assert block["assessed"] is True and block["window_days"] == 7
    assert block["previous"] == {"collected_at": T0.isoformat(), "urgency": "routine", "platelets": 200.0}
    assert (block["platelet_fall_percent"], block["platelet_drop"]) == (50.0, True)
    assert block["new_cytopenias"] == ["thrombocytopenia"] and block["urgency_change"] == "escalated"
    assert block["sources"] == [f"[S23] {rs.sources['S23']}", f"[S24] {rs.sources['S24']}"]


def test_a_cbc_with_nothing_to_compare_has_an_unassessed_block() -> None:
    rs = default_ruleset()
    assert compare_with_previous([cbc(0, 80.0), cbc(None, 50.0)], [cbc(-8, 300.0)], WEEK, rs) == [None, None]
    block = delta_block(None, WEEK, rs)
    assert block["assessed"] is False and block["window_days"] == 7
    assert delta_findings(block, 80.0, rs) == []


# -- a batch chunk: the same vectorised code over many patients at once -----------------------------------------


def test_previous_of_over_a_pool_of_interleaved_patients() -> None:
    """previous_of on a pool as a chunk gives it (patients interleaved, out of time order): each CBC's previous is
    the same patient's CBC collected last before it, strictly earlier and at most the window earlier (7 days,
    bounds included); of two collected at the same time, the one listed last; a CBC without a time is neither
    compared nor a previous one."""
    day = 86_400_000_000  # microseconds
    patients = np.array([0, 1, 0, 1, 0, 2, 0, 0, 1], dtype=np.int64)
    days = [0, 0, 3, 9, 3, 1, 4, None, 2]
    times = np.array([NO_TIME if d is None else d * day for d in days], dtype=np.int64)
    expected = [
        -1,  # patient 0, day 0: nothing earlier
        -1,  # patient 1, day 0
        0,  # patient 0, day 3: day 0
        8,  # patient 1, day 9: day 2 (position 8), exactly 7 days earlier: within the window
        0,  # patient 0, day 3 again: day 0 (the other day-3 CBC is not strictly earlier)
        -1,  # patient 2: alone
        4,  # patient 0, day 4: of the two day-3 CBCs, the one listed last (4)
        -1,  # no time: not compared
        1,  # patient 1, day 2: day 0
    ]
    assert previous_of(patients, times, timedelta(days=7)).tolist() == expected
    assert previous_of(patients, times, timedelta(days=6)).tolist()[3] == -1  # 7 days > a 6-day window


def test_a_chunk_of_thousands_gives_what_one_call_per_cbc_gives() -> None:
    """The chunk path and the one-CBC path are the same code: comparing a whole chunk (in time order) at once gives,
    for each CBC, the delta that comparing it alone against the CBCs before it gives."""
    rs = default_ruleset()
    rng = np.random.default_rng(12)
    chunk = sorted(
        (
            DeltaCbc(
                f"P{rng.integers(40)}",
                T0 + timedelta(hours=int(rng.integers(24 * 20))),
                float(rng.uniform(20, 400)),
                int(rng.integers(4)),
                tuple(name for name in ("thrombocytopenia", "anemia") if rng.random() < 0.3),
                (),
            )
            for _ in range(2000)
        ),
        key=lambda cbc: cbc.collected_at,
    )
    together = compare_with_previous(chunk, [], WEEK, rs)
    assert sum(delta is not None for delta in together) > 1500  # most have a previous CBC in the window
    for i in range(0, 2000, 37):
        assert compare_with_previous([chunk[i]], chunk[:i], WEEK, rs) == [together[i]]
