"""When a stored CBC opens the patient's referral, and which CBC an open referral shows: plain values in, a step
out, so the policy is read (and tested) without a database.

An open referral's urgency is the highest of its CBCs' urgencies: a CBC never lowers it, whenever it was collected
or arrives, and a more urgent one always raises it (a CBC dated in the future, or posted before an older critical
one, must not hide the critical result). The referral shows the CBC that sets its urgency; of CBCs of that same
urgency, the newest collected (a later arrival at an equal time). A routine CBC without a delta finding opens none
and changes none; every CBC stored while a referral is open belongs to it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class ReferralStep(StrEnum):
    """What storing a CBC does to the patient's referral."""

    NONE = "none"  # nothing is open and the CBC needs no attention
    OPEN = "open"  # open a new referral (status new) that shows this CBC
    SHOW = "show"  # the open referral shows this CBC from now on (its urgency, findings, reason and time)
    JOIN = "join"  # the CBC belongs to the open referral, which keeps showing the CBC it shows


def needs_attention(urgency_rank: int, has_delta_finding: bool) -> bool:
    """A CBC needs a clinician's attention when it is more than routine or something changed since the last one."""
    return urgency_rank > 0 or has_delta_finding


def referral_step(
    urgency_rank: int,
    collected_at: datetime | None,
    has_delta_finding: bool,
    *,
    open_rank: int | None,
    open_collected_at: datetime | None,
) -> ReferralStep:
    """The step for a CBC of this urgency rank and collection time; `open_rank` and `open_collected_at` describe
    the CBC the patient's open referral shows (`open_rank` None: no referral is open)."""
    attention = needs_attention(urgency_rank, has_delta_finding)
    if open_rank is None:
        return ReferralStep.OPEN if attention else ReferralStep.NONE
    return (
        ReferralStep.SHOW
        if takes_over(urgency_rank, collected_at, attention, open_rank=open_rank, open_collected_at=open_collected_at)
        else ReferralStep.JOIN
    )


def takes_over(
    urgency_rank: int,
    collected_at: datetime | None,
    attention: bool,
    *,
    open_rank: int,
    open_collected_at: datetime | None,
) -> bool:
    """Whether a CBC becomes the one the open referral shows: a more urgent one always; one of the same urgency
    that needs attention when it was collected no earlier (or either time is unknown)."""
    if urgency_rank != open_rank:
        return urgency_rank > open_rank
    if not attention:
        return False
    return open_collected_at is None or collected_at is None or collected_at >= open_collected_at
