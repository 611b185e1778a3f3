"""What a FHIR client expects of a FHIR endpoint (issue 14 item 1), as plain FHIR R4 resources:

- the CapabilityStatement a client reads at `[base]/metadata` before anything else;
- the OperationDefinition of `$interpret` (the one operation the service offers, at the system level);
- an OperationOutcome for an error, from the problem+json the rest of the service writes, so that a FHIR
  client that asked for FHIR gets errors it can parse (its `expression` names the FHIR path the problem's
  `errors` key gave).
"""

from __future__ import annotations

from typing import Any

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"
OPERATION_CODE = "interpret"

#: HTTP status -> OperationOutcome.issue.code (http://hl7.org/fhir/R4/valueset-issue-type.html).
ISSUE_CODE_BY_STATUS = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    503: "transient",
}


def operation_definition(base: str) -> dict[str, Any]:
    """`$interpret`: any CBC-bearing FHIR resource in, a Bundle of interpretations out (it may store)."""
    return {
        "resourceType": "OperationDefinition",
        "id": OPERATION_CODE,
        "url": f"{base}/OperationDefinition/{OPERATION_CODE}",
        "name": "Interpret",
        "title": "Interpret complete blood counts",
        "status": "active",
        "kind": "operation",
        "affectsState": True,
        "description": "Reads the CBCs of a Bundle, a DiagnosticReport with its Observations, a panel Observation "
        "or a single Observation, and answers one interpretation per CBC: the counts described against their "
        "reference ranges, the findings with the rules that fired and their sources, and an urgency. It "
        "describes counts and never diagnoses. CBCs with a patient id are stored unless `store=false`.",
        "code": OPERATION_CODE,
        "system": True,
        "type": False,
        "instance": False,
        "parameter": [
            {
                "name": "resource",
                "use": "in",
                "min": 1,
                "max": "1",
                "documentation": "The body: a Bundle, DiagnosticReport or Observation (not wrapped in Parameters).",
                "type": "Resource",
            },
            {
                "name": "store",
                "use": "in",
                "min": 0,
                "max": "1",
                "documentation": "A query parameter: false interprets without storing (default true).",
                "type": "boolean",
            },
            {
                "name": "return",
                "use": "out",
                "min": 1,
                "max": "1",
                "documentation": "A Bundle: per CBC an Observation-derived interpretation with Flags and "
                "a DetectedIssue per finding (with `Accept: application/fhir+json` or `_format=fhir`; our JSON "
                "answer otherwise).",
                "type": "Bundle",
            },
        ],
    }


def capability_statement(base: str, *, software_version: str, ruleset_version: str, date: str) -> dict[str, Any]:
    """The server's CapabilityStatement: FHIR R4 JSON, bearer keys, the `$interpret` operation."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "labservice",
        "kind": "instance",
        "software": {"name": "labservice", "version": software_version},
        "implementation": {
            "description": f"labservice CBC interpretation (rule set {ruleset_version})",
            "url": base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "CBC interpretation. POST a Bundle, DiagnosticReport or Observation to "
                f"{base}/$interpret (also {base}/interpret). Errors are OperationOutcome resources when the "
                "client asks for FHIR (Accept: application/fhir+json or _format=fhir), problem+json otherwise.",
                "security": {
                    "cors": False,
                    "description": "An API key as a bearer token (Authorization: Bearer lsk_...), with the "
                    "`interpret` scope to send CBCs; `read` as well to see stored history in the answer.",
                },
                "resource": [
                    {
                        "type": "OperationDefinition",
                        "interaction": [{"code": "read"}],
                    }
                ],
                "operation": [{"name": OPERATION_CODE, "definition": f"{base}/OperationDefinition/{OPERATION_CODE}"}],
            }
        ],
    }


def operation_outcome(status: int, problem: dict[str, Any]) -> dict[str, Any]:
    """An OperationOutcome saying what a problem+json body says: its detail, then one issue per field error."""
    severity = "error" if status < 500 or status == 503 else "fatal"
    code = ISSUE_CODE_BY_STATUS.get(status, "exception" if status >= 500 else "processing")
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    issues: list[dict[str, Any]] = [{"severity": severity, "code": code, "diagnostics": detail}]
    for path, messages in (problem.get("errors") or {}).items():
        for message in messages if isinstance(messages, list) else [messages]:
            issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": str(message)}
            if path and path != "body":  # labservice.errors.BODY_PATH: the whole body, no FHIR path
                issue["expression"] = [str(path)]
            issues.append(issue)
    return {"resourceType": "OperationOutcome", "issue": issues}
