"""services.referral_policy.referral_step on plain values, table-driven (no database).

Expected steps from the referral rules of issue 4 and issue 10 (item 1), as tests/store/test_repository.py and
tests/api/test_referral_urgency.py check them through the database and the API:
- a CBC needs attention when its urgency is above routine (rank 0 routine … 3 immediate) or it has a delta
  finding; with no open referral, one that needs attention opens a referral, any other opens none;
- an open referral's urgency is the highest of its CBCs': a more urgent CBC always takes it over (whenever it was
  collected), a less urgent one never does (it only joins);
- of the same urgency, a CBC that needs attention takes it over when collected at or after the CBC shown (or when
  either time is unknown); a routine CBC without a delta finding never does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from labservice.services.referral_policy import ReferralStep, needs_attention, referral_step

P = pytest.param
T0 = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
EARLIER, LATER = T0 - timedelta(days=2), T0 + timedelta(days=2)
ROUTINE, SOON, URGENT, IMMEDIATE = 0, 1, 2, 3


@pytest.mark.parametrize(
    ("rank", "delta", "attention"),
    [
        P(ROUTINE, False, False, id="routine, nothing changed"),
        P(ROUTINE, True, True, id="routine with a delta finding"),
        P(SOON, False, True, id="soon"),
        P(IMMEDIATE, False, True, id="immediate"),
    ],
)
def test_what_needs_attention(rank: int, delta: bool, attention: bool) -> None:
    assert needs_attention(rank, delta) is attention


@pytest.mark.parametrize(
    ("rank", "delta", "step"),
    [
        P(ROUTINE, False, ReferralStep.NONE, id="routine without delta: none"),
        P(ROUTINE, True, ReferralStep.OPEN, id="routine with a delta finding: opens one"),
        P(SOON, False, ReferralStep.OPEN, id="soon: opens one"),
        P(URGENT, False, ReferralStep.OPEN, id="urgent: opens one"),
    ],
)
def test_with_no_open_referral(rank: int, delta: bool, step: ReferralStep) -> None:
    assert referral_step(rank, T0, delta, open_rank=None, open_collected_at=None) is step


@pytest.mark.parametrize(
    ("rank", "collected_at", "delta", "open_rank", "open_at", "step"),
    [
        P(URGENT, EARLIER, False, SOON, T0, ReferralStep.SHOW, id="more urgent, collected earlier: takes over"),
        P(URGENT, LATER, False, SOON, T0, ReferralStep.SHOW, id="more urgent, collected later: takes over"),
        P(URGENT, None, False, SOON, T0, ReferralStep.SHOW, id="more urgent, no time: takes over"),
        P(SOON, LATER, False, URGENT, T0, ReferralStep.JOIN, id="less urgent, collected later: joins"),
        P(ROUTINE, LATER, True, SOON, T0, ReferralStep.JOIN, id="routine delta finding under a soon one: joins"),
        P(ROUTINE, LATER, False, URGENT, T0, ReferralStep.JOIN, id="routine, nothing changed: joins"),
        P(URGENT, LATER, False, URGENT, T0, ReferralStep.SHOW, id="as urgent, collected later: takes over"),
        P(URGENT, T0, False, URGENT, T0, ReferralStep.SHOW, id="as urgent, collected at the same time: takes over"),
        P(URGENT, EARLIER, False, URGENT, T0, ReferralStep.JOIN, id="as urgent, collected earlier: joins"),
        P(URGENT, None, False, URGENT, T0, ReferralStep.SHOW, id="as urgent, no collection time: takes over"),
        P(URGENT, EARLIER, False, URGENT, None, ReferralStep.SHOW, id="as urgent, the shown CBC has no time"),
        P(ROUTINE, LATER, True, ROUTINE, T0, ReferralStep.SHOW, id="routine delta finding, later: takes over"),
        P(ROUTINE, LATER, False, ROUTINE, T0, ReferralStep.JOIN, id="routine without delta never takes over"),
    ],
)
def test_with_an_open_referral(
    rank: int, collected_at: datetime | None, delta: bool, open_rank: int, open_at: datetime | None, step: ReferralStep
) -> None:
    assert referral_step(rank, collected_at, delta, open_rank=open_rank, open_collected_at=open_at) is step
