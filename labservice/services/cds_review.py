"""The `cbc-review` service: a validated hook call in, `{"cards": [...]}` out.

gather (prefetch, else the FHIR server) -> one collection Bundle -> `read_fhir` -> the most recent
CBC -> `interpret` (the caller's: schema + engine) -> one card.

- **Most recent**: the CBC with the latest collection time; CBCs without one come after every
  dated CBC, in the order the server sorted them (`_sort=-date`). The card says how many older
  CBCs there were, and only the most recent is validated and interpreted: a problem in an old
  result does not block today's card.
- **No CBC** (no Observations, `null` prefetch, or none usable): an empty `cards` list, as the
  specification asks when a service has no decision support ("If your CDS Service has no decision
  support for the user, your service should return a 200 HTTP response with an empty array of
  cards"). An info card on every chart without a CBC would be noise.
- **Nothing is stored.** patient-view fires each time a chart is opened; the results belong to the
  EHR's record, the call is authorised to read, and storing each view would file the same results
  again and open referrals from a chart being looked at. CBCs reach the record of results through
  `/api/v1/interpretations`, `/api/v1/fhir/interpret` or batches, where a sender means to file them.

Errors: malformed FHIR raises InputError with paths in the call
(`prefetch.cbcObservations.entry[2].resource(Observation/x)...`); the view answers 422. A most recent
CBC that reads as FHIR but is not a valid CBC (an unknown unit, an implausible value) gets a warning
card naming the problem and where it is, not an error: an EHR shows nothing for a failed call, and a
clinician opening the chart should learn that the latest count could not be read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from labservice.adapters.cdshooks.bundle import ReviewBundle, review_bundle
from labservice.adapters.cdshooks.cards import CardContext, cbc_card, unusable_card
from labservice.adapters.cdshooks.fhir_client import FhirAccess
from labservice.adapters.cdshooks.prefetch import gather
from labservice.adapters.cdshooks.request import HookRequest
from labservice.adapters.cdshooks.service import prefetch_templates
from labservice.adapters.errors import InputError
from labservice.adapters.fhir.model import FhirCbc
from labservice.adapters.fhir.reader import read_fhir
from labservice.adapters.located import relocate
from labservice.core.ruleset import Ruleset

#: Interpret CBC documents (our JSON vocabulary, as read): answers, or InputError with indexed paths.
Interpret = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def review(
    request: HookRequest,
    *,
    ruleset: Ruleset,
    interpret: Interpret,
    base_url: str,
    access: FhirAccess,
    stored: Callable[[str], bool] = lambda patient: True,
) -> dict[str, Any]:
    gathered = gather(request, prefetch_templates(ruleset), access=access)
    built = review_bundle(gathered)
    try:
        read = read_fhir(built.bundle, ruleset)
    except InputError as error:
        raise _in_call(error.errors, built) from None
    if not read.cbcs:
        return {"cards": []}
    latest = most_recent(read.cbcs)
    latest_time = _moment(latest.document.get("collected_at"))
    try:
        answer = interpret([latest.document])[0]
    except InputError as error:
        answer, problems = None, _in_call(relocate(error.errors, [latest.locations]), built).errors
    patient = (latest.document.get("patient") or {}).get("id") or request.patient_id
    context = CardContext(
        ruleset=ruleset,
        base_url=base_url.rstrip("/"),
        patient_id=request.patient_id,
        dashboard_patient=str(patient),
        encounter_id=request.encounter_id,
        collected_at=latest.document.get("collected_at"),
        older_cbcs=len(read.cbcs) - 1,
        read_from={used.analyte: used.reference or built.to_call_path(used.path) for used in latest.observations},
        non_final=list(latest.non_final),
        unused=[
            (built.to_call_path(item.path), item.reason)
            for item in read.unused
            if _same_time(built.resource_at(item.path), latest_time)
        ],
        patient_stored=stored(str(patient)),
    )
    if answer is None:
        return {"cards": [unusable_card(problems, context)]}
    return {"cards": [cbc_card(answer, context)]}


def most_recent(cbcs: list[FhirCbc]) -> FhirCbc:
    """The CBC collected last; undated CBCs only when none is dated (then the server's first)."""
    dated = [(moment, i) for i, cbc in enumerate(cbcs) if (moment := _moment(cbc.document.get("collected_at")))]
    if not dated:
        return cbcs[0]
    _, index = max(dated, key=lambda item: (item[0], -item[1]))
    return cbcs[index]


def _moment(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _same_time(resource: dict[str, Any] | None, moment: datetime | None) -> bool:
    """Whether an unused resource may belong to the latest CBC: same effective time, or no time to tell."""
    if moment is None or resource is None:
        return True
    when = (
        resource.get("effectiveDateTime")
        or resource.get("effectiveInstant")
        or (resource.get("effectivePeriod") or {}).get("start")
    )
    found = _moment(when)
    return found is None or found == moment


def _in_call(errors: dict[str, list[str]], built: ReviewBundle) -> InputError:
    located: dict[str, list[str]] = {}
    for path, messages in errors.items():
        located.setdefault(built.to_call_path(path), []).extend(messages)
    return InputError(located)
