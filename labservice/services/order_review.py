"""The `platelet-order-check` service (clinical-rules §13 v2): an `order-sign` call in, `{"cards": [...]}` out.

draftOrders -> the orders whose code is listed (reference_ranges/order_codes.csv) -> the patient's latest
platelet count (prefetch, else the FHIR server, as `cbc-review` gathers it) -> one card per listed order whose
group's threshold is above that count.

- No listed order, or no platelet count at all: no card (the specification's empty `cards` when a service
  has no decision support). The FHIR data is then not even read when no order is listed.
- The latest count is the latest by collection time among the CBCs that carry platelets; its value in
  10^9/L comes from the same engine as every answer (units converted, plausibility checked). A latest count
  that cannot be read (an unknown unit) is a 422 naming where it is in the call, as for `cbc-review`.
- The dashboard link is given only when the patient has CBCs stored under that id; nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labservice.adapters.cdshooks.bundle import review_bundle
from labservice.adapters.cdshooks.fhir_client import FhirAccess
from labservice.adapters.cdshooks.order_cards import order_card
from labservice.adapters.cdshooks.orders import draft_orders, load_order_rules, matching_orders
from labservice.adapters.cdshooks.prefetch import gather
from labservice.adapters.cdshooks.request import HookRequest
from labservice.adapters.cdshooks.service import PLATELET_ORDER_CHECK, PLATELETS, prefetch_templates
from labservice.adapters.errors import InputError
from labservice.adapters.fhir.reader import read_fhir
from labservice.adapters.located import relocate
from labservice.core.ruleset import Ruleset
from labservice.services.cds_review import Interpret, most_recent

#: Links to show for a patient id (the dashboard's page when the patient is stored), or none.
Links = Callable[[str], list[dict[str, str]]]


def order_review(
    request: HookRequest, *, ruleset: Ruleset, interpret: Interpret, base_url: str, access: FhirAccess, links: Links
) -> dict[str, Any]:
    orders = draft_orders(request.extra_context)
    matched = matching_orders(orders, load_order_rules(ruleset.directory))
    if not matched:
        return {"cards": []}
    built = review_bundle(gather(request, prefetch_templates(ruleset, PLATELET_ORDER_CHECK), access=access))
    try:
        read = read_fhir(built.bundle, ruleset)
    except InputError as error:
        raise InputError({built.to_call_path(path): messages for path, messages in error.errors.items()}) from None
    counted = [cbc for cbc in read.cbcs if PLATELETS in (cbc.document.get("results") or {})]
    if not counted:
        return {"cards": []}
    latest = most_recent(counted)
    document = {**latest.document, "results": {PLATELETS: latest.document["results"][PLATELETS]}}
    try:
        answer = interpret([document])[0]
    except InputError as error:
        located = relocate(error.errors, [latest.locations])
        raise InputError({built.to_call_path(path): messages for path, messages in located.items()}) from None
    platelets = float(answer["analytes"][PLATELETS]["value"])
    patient = str((latest.document.get("patient") or {}).get("id") or request.patient_id)
    cards = [
        order_card(
            order,
            rule,
            name,
            platelets,
            latest.document.get("collected_at"),
            ruleset,
            base_url.rstrip("/"),
            links(patient),
        )
        for order, rule, name in matched
        if platelets < rule.platelets_below
    ]
    return {"cards": cards}
