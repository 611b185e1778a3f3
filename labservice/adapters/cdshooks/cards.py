"""One CDS Hooks card from one interpretation answer (the api-contract JSON answer).

- `summary`: one sentence under 140 characters (the specification: "One-sentence, <140-character
  summary"): the CBC's day, its findings, its urgency.
- `indicator` from the urgency (clinical-rules §9), documented in the README:
  routine -> `info`; soon and urgent -> `warning`; immediate -> `critical` (clinical-rules §9 *v2*).
  `critical` is for what asks to act now: the red flags of §7 and a new critical value (§3 *v2*:
  notify the treating clinician now); urgent asks for haematology within 24-48 h, which is a
  warning to act on, not an emergency.
- `detail`: Markdown with the findings, what could not be assessed, the counts, where each value
  was read from and the full citations. Text taken from the client's FHIR data is escaped.
- `source`: labservice and its ruleset version, linking to the rule tables it applied.
- `links`: the patient's page in the referral dashboard (absolute URL).
- `suggestions`: the reflex tests of `suggestions.py`, with `selectionBehavior` "any" (each is a
  separate order; none excludes another).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from labservice.adapters.cdshooks.suggestions import reflex_tests_for, suggestion
from labservice.core.numbers import text_number
from labservice.core.ruleset import Ruleset

OVERRIDE_SYSTEM = "https://labservice.example/fhir/CodeSystem/cds-override-reason"
#: CDS Hooks 2.0 Card.overrideReasons: Codings the EHR offers when the card is dismissed.
OVERRIDE_REASONS = [
    {
        "system": OVERRIDE_SYSTEM,
        "code": "already-addressed",
        "display": "Already addressed (e.g. a transfusion or a repeat count is planned)",
    },
    {
        "system": OVERRIDE_SYSTEM,
        "code": "benefit-outweighs-risk",
        "display": "Benefit outweighs the risk for this patient",
    },
    {
        "system": OVERRIDE_SYSTEM,
        "code": "not-applicable",
        "display": "Does not apply (e.g. a prophylactic dose, or the count is not current)",
    },
]

#: The specification asks for a summary of fewer than 140 characters.
SUMMARY_LIMIT = 139
INDICATOR_BY_URGENCY = {"routine": "info", "soon": "warning", "urgent": "warning", "immediate": "critical"}
URGENCY_MEANING = {
    "immediate": "act now",
    "urgent": "haematology review within 24-48 h",
    "soon": "clinical review within days",
    "routine": "no urgent action from the counts",
}
MARKDOWN_SPECIALS = "\\`*_[]<>|~#"
SHOWN_UNUSED = 5


@dataclass
class CardContext:
    """What the card needs beyond the answer."""

    ruleset: Ruleset
    base_url: str  # absolute, no trailing slash
    patient_id: str  # context.patientId (FHIR id), for the ServiceRequests
    dashboard_patient: str  # the id the record of results files this patient under
    encounter_id: str | None = None
    collected_at: str | None = None
    older_cbcs: int = 0
    read_from: dict[str, str] = field(default_factory=dict)  # analyte -> Observation reference
    non_final: list[str] = field(default_factory=list)
    unused: list[tuple[str, str]] = field(default_factory=list)  # (where, why), the latest CBC's
    patient_stored: bool = True  # whether the dashboard has a page for dashboard_patient


def escape_markdown(text: Any) -> str:
    """Text from the client's data, safe inside Markdown (no links, emphasis or tables from it)."""
    out = " ".join(str(text).split())
    return "".join(f"\\{char}" if char in MARKDOWN_SPECIALS else char for char in out)


md = escape_markdown


def indicator(urgency: str) -> str:
    return INDICATOR_BY_URGENCY[urgency]


def humanise(code: str) -> str:
    return code.replace("_", " ")


def summary(answer: dict[str, Any], context: CardContext) -> str:
    """'CBC 2171-07-24: thrombocytopenia, possible pseudothrombocytopenia; urgency soon' (< 140 chars)."""
    day = context.collected_at[:10] if context.collected_at else "of unknown date"
    head = f"CBC {day}" + (" (not final)" if context.non_final else "")
    tail = f"; urgency {answer['urgency']}"
    names = [humanise(finding["code"]) for finding in answer["findings"]]
    if not names:
        missing = len(answer.get("not_assessed", []))
        what = "no finding in the counts sent" + (f", {missing} not assessed" if missing else "")
        return _fit(f"{head}: {what}{tail}")
    for shown in range(len(names), 0, -1):
        more = f" (+{len(names) - shown} more)" if shown < len(names) else ""
        text = f"{head}: {', '.join(names[:shown])}{more}{tail}"
        if len(text) <= SUMMARY_LIMIT:
            return text
    return _fit(f"{head}: {names[0]}{tail}")


def _fit(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def detail(answer: dict[str, Any], context: CardContext, tests: list[Any]) -> str:
    lines: list[str] = []
    when = f"collected {context.collected_at}" if context.collected_at else "collection time not given"
    lines.append(f"**Most recent CBC**, {md(when)}.")
    if context.older_cbcs:
        plural = "s" if context.older_cbcs > 1 else ""
        lines.append(
            f"{context.older_cbcs} older CBC{plural} in the results sent {'are' if plural else 'is'} "
            "not reviewed on this card; the dashboard shows the trend."
        )
    if context.non_final:
        lines.append("Not final: " + md(", ".join(context.non_final)) + ".")
    actions = answer.get("urgency_reasons") or {}
    reasons = "; ".join(
        humanise(reason) + (f" ({actions[reason]})" if isinstance(actions, dict) and actions[reason] else "")
        for reason in actions
    )
    lines += [
        "",
        f"**Urgency: {answer['urgency']}** ({URGENCY_MEANING[answer['urgency']]})"
        + (f": {reasons}." if reasons else "."),
    ]
    lines += ["", "**Findings**", ""]
    lines += [f"- **{md(finding['title'])}**: {md(finding['detail'])}" for finding in answer["findings"]] or [
        "- None in the counts sent."
    ]
    if answer.get("not_assessed"):
        lines += ["", "**Not assessed** (missing data is not normal)", ""]
        lines += [f"- {humanise(item['code'])}: {md(item['reason'])}" for item in answer["not_assessed"]]
    aplastic = answer.get("aplastic_anemia") or {}
    if aplastic.get("assessment") not in (None, "not_applicable"):
        lines += [
            "",
            f"**Aplastic anaemia blood-count criteria**: {md(aplastic.get('text', aplastic['assessment']))} "
            f"{md(aplastic.get('caveat', ''))}".rstrip(),
        ]
    if tests:
        lines += ["", "**Suggested tests**", ""]
        lines += [
            f"- {md(test.label)}: {md(test.reason)} ({md(test.rule)}; "
            f"{md(''.join(f'[{tag}]' for tag in test.sources))})."
            for test in tests
        ]
    lines += ["", *_counts_table(answer, context)]
    if context.unused:
        lines += [
            "",
            f"**Not used** ({len(context.unused)} CBC-related resource"
            f"{'s' if len(context.unused) > 1 else ''} in the latest CBC's results)",
            "",
        ]
        lines += [f"- {md(where)}: {md(why)}" for where, why in context.unused[:SHOWN_UNUSED]]
        if len(context.unused) > SHOWN_UNUSED:
            lines.append(f"- and {len(context.unused) - SHOWN_UNUSED} more.")
    lines += ["", "**Sources**", ""]
    lines += [f"- {md(citation)}" for citation in _citations(answer, context.ruleset, tests)]
    lines += ["", "*labservice describes counts; it never diagnoses. Nothing from this call was stored.*"]
    return "\n".join(lines)


def _counts_table(answer: dict[str, Any], context: CardContext) -> list[str]:
    labels = {name: analyte.label for name, analyte in context.ruleset.analytes.items()}
    rows = ["**Counts**", "", "| analyte | value | flag | reference range | read from |", "|---|---|---|---|---|"]
    for name, result in answer.get("analytes", {}).items():
        rng = result.get("reference_range") or {}
        span = (
            f"{rng['low']:g}-{rng['high']:g} ({rng.get('origin', 'fallback')})"
            if rng.get("low") is not None and rng.get("high") is not None
            else "none"
        )
        derived = " (derived)" if result.get("derived") else ""
        where = md(context.read_from.get(name, "derived" if result.get("derived") else ""))
        bounds = [rng.get("low"), rng.get("high")]
        shown = text_number(result["value"], [b for b in bounds if b is not None])  # §1 v2
        rows.append(
            f"| {md(labels.get(name, name))} | {shown} {md(result['unit'])}{derived} | "
            f"{md(result.get('flag') or '')} | {md(span)} | {where} |"
        )
    return rows


def _citations(answer: dict[str, Any], ruleset: Ruleset, tests: list[Any]) -> list[str]:
    out: list[str] = []
    groups = [finding.get("sources", []) for finding in answer["findings"]]
    aplastic = answer.get("aplastic_anemia") or {}
    if aplastic.get("assessment") not in (None, "not_applicable"):
        groups.append(aplastic.get("sources", []))
    groups += [ruleset.cite(test.sources) for test in tests]
    for group in groups:
        for citation in group:
            if citation not in out:
                out.append(citation)
    return out or ["labservice rule tables (reference_ranges/), see the source link of this card"]


def dashboard_link_for(base_url: str, patient: str) -> dict[str, str]:
    return {
        "label": "Patient page in the labservice dashboard (trends, stored CBCs, referrals)",
        "url": f"{base_url}/dashboard/patients/{quote(patient, safe='')}",
        "type": "absolute",
    }


def dashboard_link(context: CardContext) -> dict[str, str]:
    return dashboard_link_for(context.base_url, context.dashboard_patient)


def links(context: CardContext) -> list[dict[str, str]]:
    """The dashboard's patient page, only when the record of results has the patient (else it would be a 404)."""
    return [dashboard_link(context)] if context.patient_stored else []


def unusable_card(problems: dict[str, list[str]], context: CardContext) -> dict[str, Any]:
    """A warning card for a most recent CBC that could not be interpreted (an unknown unit, an implausible
    value): an answer of 422 would show the clinician nothing, and an implausible count is itself worth a look."""
    day = context.collected_at[:10] if context.collected_at else "of unknown date"
    when = f"collected {context.collected_at}" if context.collected_at else "collection time not given"
    lines = [
        f"**Most recent CBC**, {md(when)}, "
        "was **not interpreted**: a result in it cannot be used as sent. Check the result and its unit in "
        "the laboratory system; nothing is assessed from this CBC.",
        "",
        "**Problems**",
        "",
    ]
    lines += [f"- {md(where)}: {md(' '.join(messages))}" for where, messages in problems.items()]
    lines += ["", "*labservice describes counts; it never diagnoses. Nothing from this call was stored.*"]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": _fit(f"CBC {day}: not interpreted, a result cannot be used as sent (check value and unit)"),
        "indicator": "warning",
        "detail": "\n".join(lines),
        "source": {
            "label": f"labservice CBC rules ({context.ruleset.version})",
            "url": f"{context.base_url}/api/v1/ruleset",
        },
        "overrideReasons": list(OVERRIDE_REASONS),
        **({"links": links(context)} if context.patient_stored else {}),
    }


def cbc_card(answer: dict[str, Any], context: CardContext) -> dict[str, Any]:
    tests = reflex_tests_for(answer)
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary(answer, context),
        "indicator": indicator(answer["urgency"]),
        "detail": detail(answer, context, tests),
        "source": {
            "label": f"labservice CBC rules ({answer.get('ruleset_version', context.ruleset.version)})",
            "url": f"{context.base_url}/api/v1/ruleset",
        },
    }
    if tests:
        card["suggestions"] = [
            suggestion(test, context.ruleset, context.patient_id, context.encounter_id) for test in tests
        ]
        card["selectionBehavior"] = "any"
    card["overrideReasons"] = list(OVERRIDE_REASONS)
    if context.patient_stored:
        card["links"] = links(context)
    return card
