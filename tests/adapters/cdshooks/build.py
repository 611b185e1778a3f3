"""CDS Hooks calls built from the real-client fixtures, and a small real FHIR server to fetch from.

- `synthea_server_data(name)`: the Patient and CBC Observations of a Synthea transaction bundle as
  a FHIR server holds them after the transaction: `urn:uuid:` subject references become
  `Patient/<id>` (FHIR R4 http.html#trules: the server replaces the placeholder ids). Values as in
  the file.
- `spec_example_observations()`: the CBC Observations of the FHIR R4 specification's
  diagnosticreport-example.json (neutrophils 0.9 x10*9/L).
- `mimic_observations(hadm, times)`: FHIR Observations made from MIMIC-III demo LABEVENTS rows
  (platelets ITEMID 51265, WBC 51301, haemoglobin 51222; LOINC codes as D_LABITEMS.csv gives
  them), with CHARTTIME read as UTC (MIMIC times carry no zone).
- `searchset(...)`: what `Observation?patient=..&code=..&_sort=-date&_count=..` answers.
- `FhirTestServer`: `http.server` on a free loopback port in a thread, serving `Patient/<id>` and
  that Observation search, and recording the Authorization header of every request.
"""

from __future__ import annotations

import copy
import csv
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.shared_data import SHARED

FIXTURES = SHARED / "fixtures"
SYNTHEA = FIXTURES / "synthea-r4-bundles"
SPEC_EXAMPLES = FIXTURES / "fhir-r4-spec-examples"
LABEVENTS = FIXTURES / "mimic-iii-demo" / "LABEVENTS.csv"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

#: Every LOINC code of clinical-rules §1 "LOINC codes to accept", in the order written there
#: (the CBC panels 58410-2 and 57021-8 are not single results and are not searched for).
CLINICAL_RULES_CBC_CODES = (
    "777-3",
    "26515-7",  # platelets
    "6690-2",
    "26464-8",
    "804-5",  # WBC
    "718-7",
    "20509-6",
    "59260-0",  # haemoglobin
    "4544-3",
    "20570-8",  # haematocrit
    "789-8",
    "26453-1",  # RBC
    "787-2",
    "30428-7",  # MCV
    "785-6",
    "786-4",  # MCH, MCHC
    "788-0",
    "21000-5",  # RDW
    "751-8",
    "26499-4",  # neutrophils absolute
    "731-0",
    "26474-7",  # lymphocytes absolute
    "60474-4",
    "14196-0",  # reticulocytes absolute
    "17849-1",
    "4679-7",
    "31112-6",  # reticulocytes %
)

#: MIMIC-III ITEMID -> (LOINC as D_LABITEMS.csv gives it, unit code written as UCUM for K/uL).
MIMIC_ITEMS = {"51265": "777-3", "51301": "804-5", "51222": "718-7"}


def loinc_of(resource: dict[str, Any]) -> str | None:
    for coding in (resource.get("code") or {}).get("coding", []):
        if coding.get("system") == LOINC:
            return coding.get("code")
    return None


def hook_call(patient_id: str, prefetch: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A call shaped like the CDS Hooks sandbox's (hook, hookInstance, fhirServer, fhirAuthorization,
    context {userId, patientId, encounterId}, prefetch); `extra` adds or replaces top-level fields."""
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": patient_id, "encounterId": "89284"},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def authorization(token: str = "some-opaque-fhir-access-token") -> dict[str, Any]:
    """fhirAuthorization as in the specification's example."""
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/Patient.read patient/Observation.read",
        "subject": "cds-service4",
    }


# --- fixtures as a FHIR server holds them ----------------------------------------------------------


def synthea_server_data(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(Patient, every Observation coded with a clinical-rules §1 code) of one Synthea bundle."""
    path = next(SYNTHEA.glob(f"{name}_*.json"))
    bundle = json.loads(path.read_text(encoding="utf-8"))
    patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    placeholder, pid = patient["fullUrl"], patient["resource"]["id"]
    observations = []
    for entry in bundle["entry"]:
        resource = copy.deepcopy(entry["resource"])
        if resource["resourceType"] != "Observation" or loinc_of(resource) not in CLINICAL_RULES_CBC_CODES:
            continue
        if resource.get("subject", {}).get("reference") == placeholder:
            resource["subject"] = {"reference": f"Patient/{pid}"}
        resource.pop("encounter", None)  # points to an urn:uuid entry the search does not return
        observations.append(resource)
    return patient["resource"], observations


def spec_example_observations() -> list[dict[str, Any]]:
    """The §1-coded Observations of the FHIR R4 spec's diagnosticreport-example.json (Patient/pat2)."""
    bundle = json.loads((SPEC_EXAMPLES / "diagnosticreport-example.json").read_text(encoding="utf-8"))
    return [
        copy.deepcopy(e["resource"])
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and loinc_of(e["resource"]) in CLINICAL_RULES_CBC_CODES
    ]


def mimic_rows(hadm: str | None, items: tuple[str, ...] = tuple(MIMIC_ITEMS)) -> dict[str, dict[str, tuple[str, str]]]:
    """CHARTTIME -> {ITEMID: (VALUE, VALUEUOM)} of one admission's rows for `items` (every admission's,
    keyed "HADM_ID CHARTTIME", when `hadm` is None), as written in the file."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    with LABEVENTS.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if hadm is None and row["HADM_ID"] and row["ITEMID"] in items:
                key = f"{row['HADM_ID']} {row['CHARTTIME']}"
                out.setdefault(key, {})[row["ITEMID"]] = (row["VALUE"], row["VALUEUOM"])
            elif row["HADM_ID"] == hadm and row["ITEMID"] in items:
                out.setdefault(row["CHARTTIME"], {})[row["ITEMID"]] = (row["VALUE"], row["VALUEUOM"])
    return out


def mimic_observations(hadm: str, times: list[str], patient_id: str) -> list[dict[str, Any]]:
    """One Observation per CBC row of the admission at `times`, for Patient/`patient_id`."""
    rows = mimic_rows(hadm)
    observations = []
    for time in times:
        for item, (value, unit) in sorted(rows[time].items()):
            observations.append(
                {
                    "resourceType": "Observation",
                    "id": f"mimic-{hadm}-{item}-{time[:10]}-{time[11:13]}{time[14:16]}",
                    "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": MIMIC_ITEMS[item]}]},
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "effectiveDateTime": time.replace(" ", "T") + "+00:00",
                    "valueQuantity": {"value": float(value), "unit": unit},
                }
            )
    return observations


def searchset(
    observations: list[dict[str, Any]], base: str = "http://127.0.0.1/fhir", count: int | None = None
) -> dict[str, Any]:
    """A searchset Bundle, newest first (`_sort=-date`; undated last, in input order)."""
    ordered = sorted(observations, key=lambda r: r.get("effectiveDateTime") or "", reverse=True)
    if count is not None:
        ordered = ordered[:count]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(ordered),
        "entry": [
            {"fullUrl": f"{base}/Observation/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in ordered
        ],
    }


# --- a real FHIR server on loopback -----------------------------------------------------------------


class FhirTestServer:
    """Serves GET /fhir/Patient/<id>, GET /fhir/Observation?patient=&code=&_sort=-date&_count= and the
    MedicationRequest / MedicationStatement searches by patient."""

    def __init__(
        self,
        patients: list[dict[str, Any]],
        observations: list[dict[str, Any]],
        redirect_to: str | None = None,
        medications: list[dict[str, Any]] | None = None,
    ) -> None:
        self.redirect_to = redirect_to  # answer every request with a 302 to this base instead
        self.patients = {p["id"]: p for p in patients}
        self.observations = observations
        self.medications = medications or []  # MedicationRequest / MedicationStatement resources
        self.requests: list[dict[str, Any]] = []  # {"path", "query", "host", "authorization"}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/fhir"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                server.requests.append(
                    {
                        "path": parts.path,
                        "query": query,
                        "host": self.headers.get("Host"),
                        "authorization": self.headers.get("Authorization"),
                    }
                )
                if server.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to + self.path.removeprefix("/fhir"))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, body = server.answer(parts.path, query)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if path.startswith("/fhir/Patient/"):
            patient = self.patients.get(path.rsplit("/", 1)[1])
            return (200, patient) if patient else (404, _outcome("Patient not found"))
        if path == "/fhir/Observation":
            pid = query.get("patient", [""])[0]
            codes = {code.split("|")[-1] for value in query.get("code", []) for code in value.split(",")}
            found = [
                o
                for o in self.observations
                if o.get("subject", {}).get("reference") == f"Patient/{pid}" and loinc_of(o) in codes
            ]
            count = int(query["_count"][0]) if "_count" in query else None
            return 200, searchset(found, self.base_url, count)
        if path in ("/fhir/MedicationRequest", "/fhir/MedicationStatement"):
            pid = query.get("patient", [""])[0]
            kind = path.rsplit("/", 1)[1]
            found = [
                m
                for m in self.medications
                if m["resourceType"] == kind and m.get("subject", {}).get("reference") == f"Patient/{pid}"
            ]
            return 200, {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(found),
                "entry": [{"fullUrl": f"{self.base_url}/{kind}/{m['id']}", "resource": m} for m in found],
            }
        return 404, _outcome(f"unknown path {path}")

    @contextmanager
    def running(self) -> Iterator[FhirTestServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)


def _outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-found", "diagnostics": text}],
    }


def closed_port_url() -> str:
    """A loopback URL nothing listens on (a port bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/fhir"
