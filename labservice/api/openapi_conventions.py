"""What integration tools expect of the OpenAPI document (issue 14, item 3).

- every operation has an `operationId` (code generators name their methods after it): the view
  function's name in lower camel case (`create_interpretations` -> `createInterpretations`), unique
  because Flask endpoint names are;
- `servers` names the server the document was fetched from (a relative URL), so Swagger's "Try it
  out" and generated clients call the right host behind a proxy;
- every operation that stores CBCs documents its `store` query parameter, with `false` as the example
  that Swagger's "Try it out" fills in: trying the API must not put a made-up patient on the worklist;
- the CDS Hooks endpoints (a plain blueprint: the CDS Hooks 2.0 specification is their contract) are
  listed with a pointer to that specification, so the document shows every endpoint the service has.
"""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin

#: The operations that store CBCs with a patient id unless `?store=false` (labservice.query.store_requested).
STORING_ENDPOINTS = frozenset(
    {
        "interpretations.create_interpretations",
        "fhir.interpret_fhir",
        "hl7v2.interpret_hl7v2",
        "batches.create_batch",
    }
)
STORE_PARAMETER: dict[str, Any] = {
    "in": "query",
    "name": "store",
    "required": False,
    "schema": {"type": "boolean", "default": True},
    "example": False,
    "description": "Whether to store the CBCs that carry a patient id (their delta checks and referrals). "
    "Default true. `false` interprets without storing (and without reading the patient's history); any "
    "other word is a 422. Swagger's Try it out fills in `false` so that trying the API stores nothing.",
}
SERVERS = [{"url": "/", "description": "The server this document was fetched from."}]
OPERATIONS = ("get", "post", "put", "patch", "delete")
CDS_HOOKS_SPEC = "https://cds-hooks.hl7.org/2.0/"


def operation_id(endpoint: str) -> str:
    """`interpretations.create_interpretations` -> `createInterpretations`."""
    first, *rest = endpoint.rsplit(".", 1)[-1].split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


class ConventionsPlugin(BasePlugin):
    """apispec plugin: operationId on every operation, and the `store` parameter where the operation stores."""

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        for method, operation in operations.items():
            if method.lower() not in OPERATIONS or not isinstance(operation, dict):
                continue
            operation.setdefault("operationId", operation_id(rule.endpoint))
            if rule.endpoint in STORING_ENDPOINTS and method.lower() == "post":
                parameters = operation.setdefault("parameters", [])
                existing = [p for p in parameters if isinstance(p, dict) and p.get("name") == "store"]
                if existing:
                    existing[0].update({k: v for k, v in STORE_PARAMETER.items() if k not in existing[0]})
                    existing[0]["example"] = False
                else:
                    parameters.append(dict(STORE_PARAMETER))


def _problem(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def cds_hooks_paths() -> dict[str, dict[str, Any]]:
    """The CDS Hooks endpoints, documented by reference to the CDS Hooks 2.0 specification."""
    service_id = {"in": "path", "name": "service_id", "required": True, "schema": {"type": "string"}}
    tags = ["cds-hooks"]
    auth = (
        "A CDS client authenticates with a JWT signed by a key the service trusts "
        "(`CDS_JWT_ISSUERS`; see the README's CDS Hooks section)."
    )
    return {
        "/cds-services": {
            "get": {
                "operationId": "discoverCdsServices",
                "tags": tags,
                "summary": "CDS Hooks discovery: the services this server offers",
                "description": f"CDS Hooks 2.0 discovery ({CDS_HOOKS_SPEC}#discovery).",
                "security": [],
                "responses": {
                    "200": {"description": '`{"services": [...]}` as the CDS Hooks specification defines it.'}
                },
            }
        },
        "/cds-services/{service_id}": {
            "post": {
                "operationId": "callCdsService",
                "tags": tags,
                "summary": "Call a CDS Hooks service (e.g. `cbc-review` on patient-view)",
                "description": f"A hook request as CDS Hooks 2.0 defines it ({CDS_HOOKS_SPEC}#calling-a-cds-service); "
                'the answer is `{"cards": [...]}`. ' + auth,
                "parameters": [service_id],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "200": {"description": '`{"cards": [...]}`: one card per CBC that needs one.'},
                    "400": _problem("A malformed hook request (names the field)."),
                    "401": _problem("No JWT, or one the service does not trust."),
                    "404": _problem("No such service."),
                    "412": _problem("The FHIR data the service needs could not be obtained."),
                    "422": _problem("FHIR data that is not a valid CBC."),
                },
            }
        },
        "/cds-services/{service_id}/feedback": {
            "post": {
                "operationId": "sendCdsFeedback",
                "tags": tags,
                "summary": "CDS Hooks feedback on the cards a service returned",
                "description": f"Card outcomes as CDS Hooks 2.0 defines them ({CDS_HOOKS_SPEC}#feedback). " + auth,
                "parameters": [service_id],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "200": {"description": "The feedback was recorded."},
                    "400": _problem("A malformed feedback body (names the field)."),
                    "401": _problem("No JWT, or one the service does not trust."),
                    "404": _problem("No such service."),
                },
            }
        },
    }


def document_conventions(api: Any) -> None:
    """Add the plugin to a flask-smorest Api (before its blueprints) and the servers list."""
    plugin = ConventionsPlugin()
    plugin.init_spec(api.spec)
    api.spec.plugins.append(plugin)
    api.spec.options["servers"] = SERVERS


def document_cds_hooks(api: Any, app: Any) -> None:
    """List the CDS Hooks endpoints (after the blueprints, so that they come last)."""
    api.spec.tag({"name": "cds-hooks", "description": f"CDS Hooks 2.0 services ({CDS_HOOKS_SPEC})."})
    rules = {rule.rule.replace("<", "{").replace(">", "}"): rule for rule in app.url_map.iter_rules()}
    for path, operations in cds_hooks_paths().items():
        api.spec.path(rule=rules[path], operations=operations)
