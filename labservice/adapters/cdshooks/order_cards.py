"""The card of the `platelet-order-check` service (clinical-rules §13 v2): one per draft order whose group has
a platelet threshold above the patient's latest count. It states the count, its date, the threshold and its
source, and asks only for a review before signing: what to do is the clinician's decision.

Every card of this service (and of `cbc-review`) offers `overrideReasons` (CDS Hooks 2.0), so that a clinician
who signs anyway can say why in the EHR, and the EHR can send that reason back as feedback.
"""

from __future__ import annotations

import uuid
from typing import Any

from labservice.adapters.cdshooks.cards import OVERRIDE_REASONS
from labservice.adapters.cdshooks.orders import DraftOrder, OrderRule
from labservice.core.numbers import text_number
from labservice.core.ruleset import Ruleset


def order_card(
    order: DraftOrder,
    rule: OrderRule,
    name: str,
    platelets: float,
    collected_at: str | None,
    ruleset: Ruleset,
    base_url: str,
    links: list[dict[str, str]],
) -> dict[str, Any]:
    day = collected_at[:10] if collected_at else "date not given"
    count = text_number(platelets, [rule.platelets_below])  # never rounded across the threshold it is compared with
    threshold = text_number(rule.platelets_below)
    citations = ruleset.cite(rule.sources)
    detail = [
        f"**Latest platelet count: {count} x10^9/L** ({day}).",
        "",
        f"The order **{name}** ({order.resource_type}) belongs to the group *{rule.label}*, for which a platelet "
        f"count below **{threshold} x10^9/L** deserves a look before signing (clinical-rules §13).",
        "",
        f"{rule.note}." if rule.note and not rule.note.endswith(".") else rule.note,
        "",
        "Review before signing.",
        "",
        "**Source**: " + "; ".join(citations),
        "",
        "*labservice describes counts; it never diagnoses or decides a treatment. Nothing from this call was stored.*",
    ]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": f"Platelets {count} x10^9/L ({day}), below {threshold} for {rule.label}: review before signing"[
            :140
        ],
        "indicator": "warning",
        "detail": "\n".join(line for line in detail),
        "source": {"label": f"labservice order rules ({ruleset.version})", "url": f"{base_url}/api/v1/ruleset"},
        "overrideReasons": list(OVERRIDE_REASONS),
        **({"links": links} if links else {}),
    }
