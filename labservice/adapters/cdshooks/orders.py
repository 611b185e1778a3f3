"""Orders at a low platelet count (clinical-rules §13 v2), for the CDS Hooks `order-sign` service.

Two tables of `reference_ranges/`:

- `order_platelet_thresholds.csv`: per group of orders (neuraxial anaesthesia, lumbar puncture, major
  surgery, central venous catheter, therapeutic-dose anticoagulation), the platelet count below which
  signing such an order deserves a card, with its source (BSH 2017 [S31], ISTH SSC 2018 [S32]);
- `order_codes.csv`: which order codes (code system + code) belong to each group. This is configuration:
  the shipped rows are examples (column `example`), and a site lists the codes its own EHR orders with.

`draft_orders` reads the hook's `context.draftOrders` (a FHIR Bundle of MedicationRequest,
ServiceRequest and similar draft orders), and `matching_orders` pairs each order whose code is listed
with the rule of its group. What to do is never said beyond "review before signing".
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from labservice.adapters.cdshooks.request import BadHookRequest

THRESHOLDS_FILE = "order_platelet_thresholds.csv"
CODES_FILE = "order_codes.csv"
#: Where an order keeps its code, by resource type (FHIR R4).
CODE_ELEMENTS = {
    "MedicationRequest": "medicationCodeableConcept",
    "ServiceRequest": "code",
    "ProcedureRequest": "code",  # STU3 clients still send it
    "NutritionOrder": None,
}


class OrderTableError(ValueError):
    """A row of the order tables that cannot be used: the message names the file and line."""


@dataclass(frozen=True)
class OrderRule:
    group: str
    label: str
    platelets_below: float  # 10^9/L
    sources: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class OrderRules:
    rules: dict[str, OrderRule]  # group -> rule
    codes: dict[tuple[str, str], str]  # (system, code) -> group
    displays: dict[tuple[str, str], str]


@dataclass(frozen=True)
class DraftOrder:
    resource_type: str
    id: str | None
    codings: tuple[tuple[str, str, str], ...]  # (system, code, display)
    text: str | None
    path: str  # where it is in the call, e.g. "context.draftOrders.entry[0].resource"


@lru_cache(maxsize=8)
def load_order_rules(directory: Path) -> OrderRules:
    """Read and check both tables; OrderTableError names the file and line of a bad row."""
    rules: dict[str, OrderRule] = {}
    for line, row in _rows(directory / THRESHOLDS_FILE, ("group", "label", "platelets_below", "unit", "source")):
        where = f"{THRESHOLDS_FILE}:{line}"
        try:
            below = float(row["platelets_below"])
        except ValueError:
            raise OrderTableError(f"{where}: platelets_below {row['platelets_below']!r} is not a number") from None
        if not 0 < below < 1000 or row["unit"] != "10*9/L":
            raise OrderTableError(f"{where}: a platelet count in 10*9/L between 0 and 1000 is expected")
        if row["group"] in rules:
            raise OrderTableError(f"{where}: group {row['group']!r} is listed twice")
        sources = tuple(tag.strip() for tag in row["source"].split(";") if tag.strip())
        rules[row["group"]] = OrderRule(row["group"], row["label"], below, sources, row.get("note") or "")
    codes: dict[tuple[str, str], str] = {}
    displays: dict[tuple[str, str], str] = {}
    for line, row in _rows(directory / CODES_FILE, ("system", "code", "display", "group")):
        where = f"{CODES_FILE}:{line}"
        if row["group"] not in rules:
            raise OrderTableError(f"{where}: group {row['group']!r} is not in {THRESHOLDS_FILE}")
        key = (row["system"].strip(), row["code"].strip())
        if not all(key):
            raise OrderTableError(f"{where}: system and code are required")
        if key in codes:
            raise OrderTableError(f"{where}: {key[0]}|{key[1]} is listed twice")
        codes[key] = row["group"]
        displays[key] = row["display"]
    return OrderRules(rules, codes, displays)


def _rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in required if name not in (reader.fieldnames or [])]
        if missing:
            raise OrderTableError(f"{path.name}:1: missing column(s) {', '.join(missing)}")
        return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader]


def draft_orders(context: dict[str, Any]) -> list[DraftOrder]:
    """The orders of `context.draftOrders` (a Bundle); BadHookRequest names the field when it is not one."""
    bundle = context.get("draftOrders")
    where = "context.draftOrders"
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadHookRequest({where: ["draftOrders is required for order-sign: a FHIR Bundle of the draft orders."]})
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadHookRequest({f"{where}.entry": ["entry must be an array."]})
    orders = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise BadHookRequest({f"{where}.entry[{i}]": ["Each entry needs a resource."]})
        element = CODE_ELEMENTS.get(str(resource.get("resourceType")))
        concept = resource.get(element) if element else None
        codings: list[tuple[str, str, str]] = []
        text = None
        if isinstance(concept, dict):
            text = concept.get("text") if isinstance(concept.get("text"), str) else None
            for coding in concept.get("coding") or []:
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    codings.append(
                        (str(coding.get("system") or ""), coding["code"].strip(), str(coding.get("display") or ""))
                    )
        orders.append(
            DraftOrder(
                resource_type=str(resource.get("resourceType")),
                id=resource.get("id") if isinstance(resource.get("id"), str) else None,
                codings=tuple(codings),
                text=text,
                path=f"{where}.entry[{i}].resource",
            )
        )
    return orders


def matching_orders(orders: list[DraftOrder], table: OrderRules) -> list[tuple[DraftOrder, OrderRule, str]]:
    """(order, its group's rule, the order's name) for every order with a listed code; each order once."""
    found = []
    for order in orders:
        for system, code, display in order.codings:
            group = table.codes.get((system, code))
            if group is not None:
                name = order.text or display or table.displays[(system, code)]
                found.append((order, table.rules[group], name))
                break
    return found
