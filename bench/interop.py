"""Interoperability benchmark: FHIR R4 bundles, CDS Hooks and HL7 v2 through the real service.

1. In process (Flask test client, no HTTP): each Synthea bundle of ../shared/fixtures/synthea-r4-bundles
   (0.2-1.7 MB, up to 9 CBC panels among ~1,000 other resources) posted to
   POST /api/v1/fhir/interpret?store=false, --repeat times after one warm-up; median and max per bundle,
   the JSON answer and the FHIR answer (Accept: application/fhir+json).
   Target: a 1.5 MB bundle in <= 150 ms.
2. Under gunicorn (2 sync workers, a throw-away SQLite file, loopback), --clients closed-loop clients for
   --seconds per case: FHIR (the specification's CBC report; the largest Synthea bundle), CDS Hooks
   patient-view with prefetch (a Synthea patient and its CBC Observations), HL7 v2 ORU^R01 (nHapi's CBC,
   local codes) and ORF^R04 (three CBCs). Requests/s, p50 / p99 and the status codes.
   Target: CDS Hooks p99 <= 500 ms (the CDS Hooks specification's guidance).
Timings are printed, never asserted; the exit status is 1 only when a request did not answer 200.

Usage: python bench/interop.py [--smoke] [--seconds 10] [--clients 4] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from api import free_port, wait_ready  # noqa: E402
from credentials import bearer, create_api_key  # noqa: E402
from loadgen import build_request, run_load  # noqa: E402

from tests.shared_data import FIXTURES  # noqa: E402  (../shared beside the checkout, or LABSERVICE_SHARED)

HOST = "127.0.0.1"
TARGET_BUNDLE_MS = 150.0
TARGET_CDS_P99_MS = 500.0
FHIR_JSON = "application/fhir+json"
HL7_TYPE = "x-application/hl7-v2+er7"
CBC_LOINC = {
    "777-3",
    "26515-7",
    "6690-2",
    "26464-8",
    "804-5",
    "718-7",
    "20509-6",
    "4544-3",
    "20570-8",
    "789-8",
    "26453-1",
    "787-2",
    "30428-7",
    "785-6",
    "786-4",
    "788-0",
    "21000-5",
    "751-8",
    "26499-4",
    "731-0",
    "26474-7",
}


def synthea_bundles() -> list[Path]:
    return sorted((FIXTURES / "synthea-r4-bundles").glob("*.json"), key=lambda p: p.stat().st_size)


def in_process(repeat: int, files: list[Path]) -> list[tuple[str, float, int, float, float, float]]:
    """(file, MB, CBCs, median ms JSON answer, max ms JSON answer, median ms FHIR answer) per bundle."""
    from labservice.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite"})
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = bearer(create_api_key(f"sqlite:///{tmp}/bench.sqlite"))[
            "Authorization"
        ]
        rows = []
        for path in files:
            body = path.read_bytes()
            url = "/api/v1/fhir/interpret?store=false"
            answer = client.post(url, data=body, content_type=FHIR_JSON)
            if answer.status_code != 200:
                raise SystemExit(f"{path.name}: {answer.status_code} {answer.get_data(as_text=True)[:300]}")
            cbcs = len(answer.get_json()["interpretations"])
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                client.post(url, data=body, content_type=FHIR_JSON)
                times.append((time.perf_counter() - start) * 1e3)
            fhir_times = []
            for _ in range(repeat):
                start = time.perf_counter()
                out = client.post(url, data=body, content_type=FHIR_JSON, headers={"Accept": FHIR_JSON})
                fhir_times.append((time.perf_counter() - start) * 1e3)
            if out.status_code != 200:
                raise SystemExit(f"{path.name} (FHIR answer): {out.status_code}")
            rows.append(
                (
                    path.name.split("_")[0] + " " + path.name.split("_")[1],
                    len(body) / 1e6,
                    cbcs,
                    statistics.median(times),
                    max(times),
                    statistics.median(fhir_times),
                )
            )
        return rows


def cds_request(port: int, auth: dict[str, str]) -> bytes:
    """A patient-view call shaped like the CDS Hooks sandbox's, prefetch filled from a Synthea bundle."""
    bundle = json.loads(max(synthea_bundles(), key=lambda p: p.stat().st_size).read_text())
    resources = [entry["resource"] for entry in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    observations = [
        r
        for r in resources
        if r["resourceType"] == "Observation"
        and any(c.get("code") in CBC_LOINC for c in r.get("code", {}).get("coding", []))
    ]
    searchset = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(observations),
        "entry": [{"fullUrl": f"urn:uuid:{o['id']}", "resource": o, "search": {"mode": "match"}} for o in observations],
    }
    discovery = json.loads(_get(port, "/cds-services"))
    service = next(s for s in discovery["services"] if s["hook"] == "patient-view")
    prefetch = {}
    for key, template in service.get("prefetch", {}).items():
        prefetch[key] = patient if template.startswith("Patient/") else searchset
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "http://127.0.0.1:9/fhir",  # not reachable: the prefetch must be enough
        "context": {"userId": "Practitioner/example", "patientId": patient["id"]},
        "prefetch": prefetch,
    }
    return build_request("POST", f"/cds-services/{service['id']}", HOST, port, json.dumps(body).encode(), headers=auth)


def _get(port: int, path: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as response:
        return response.read()


def under_gunicorn(seconds: float, clients: int) -> list[tuple[str, object]]:
    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LABSERVICE_DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite"}
        auth = bearer(create_api_key(f"sqlite:///{tmp}/bench.sqlite", ("interpret",)))  # the API needs a key
        server = subprocess.Popen(
            [str(gunicorn), "-w", "2", "-b", f"{HOST}:{port}", "--log-level", "warning", "wsgi:app"], cwd=ROOT, env=env
        )
        try:
            wait_ready(port)
            time.sleep(1.0)
            spec = (FIXTURES / "fhir-r4-spec-examples" / "diagnosticreport-example.json").read_bytes()
            largest = max(synthea_bundles(), key=lambda p: p.stat().st_size)
            nhapi = FIXTURES / "hl7v2" / "nhapi"
            cases = [
                (
                    "FHIR: spec CBC report (1 CBC)",
                    build_request("POST", "/api/v1/fhir/interpret?store=false", HOST, port, spec, FHIR_JSON, auth),
                ),
                (
                    f"FHIR: Synthea {largest.stat().st_size / 1e6:.1f} MB bundle",
                    build_request(
                        "POST", "/api/v1/fhir/interpret?store=false", HOST, port, largest.read_bytes(), FHIR_JSON, auth
                    ),
                ),
                (
                    "FHIR: spec CBC report, FHIR answer",
                    build_request(
                        "POST",
                        "/api/v1/fhir/interpret?store=false",
                        HOST,
                        port,
                        spec,
                        FHIR_JSON,
                        {"Accept": FHIR_JSON, **auth},
                    ),
                ),
                ("CDS Hooks: patient-view with prefetch", cds_request(port, auth)),
                (
                    "HL7 v2: ORU^R01 (nHapi, local codes)",
                    build_request(
                        "POST",
                        "/api/v1/hl7v2/interpret?store=false",
                        HOST,
                        port,
                        (nhapi / "PipeParserV231Tests_ParseORUr01LongToXml.hl7").read_bytes(),
                        HL7_TYPE,
                        auth,
                    ),
                ),
                (
                    "HL7 v2: ORF^R04 (3 CBCs)",
                    build_request(
                        "POST",
                        "/api/v1/hl7v2/interpret?store=false",
                        HOST,
                        port,
                        (nhapi / "PipeParserV231Tests_ParseORFR04FromDHTest.hl7").read_bytes(),
                        HL7_TYPE,
                        auth,
                    ),
                ),
            ]
            for _, request in cases:  # warm both workers
                run_load(HOST, port, [request], seconds=min(1.0, seconds), clients=2)
            return [
                (name, run_load(HOST, port, [request], seconds=seconds, clients=clients)) for name, request in cases
            ]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="2 bundles, 1 repeat, 1 s per case (CI)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    files = synthea_bundles()
    if args.smoke:
        args.seconds, args.repeat, files = 1.0, 1, [files[0], files[-1]]

    rows = in_process(args.repeat, files)
    print(f"FHIR bundles in process (Flask test client, ?store=false), median of {args.repeat} after a warm-up:")
    print("| bundle | MB | CBCs | JSON answer median ms | max ms | FHIR answer median ms | target ≤ 150 ms/1.5 MB |")
    print("|---|---|---|---|---|---|---|")
    for name, mb, cbcs, median, worst, fhir in rows:
        budget = TARGET_BUNDLE_MS * max(mb, 1.5) / 1.5 if mb > 1.5 else TARGET_BUNDLE_MS
        verdict = "met" if max(median, fhir) <= budget else "missed"
        print(f"| {name} | {mb:.2f} | {cbcs} | {median:.1f} | {worst:.1f} | {fhir:.1f} | {verdict} |")

    results = under_gunicorn(args.seconds, args.clients)
    print(
        f"\nUnder gunicorn (2 sync workers, loopback), {args.clients} closed-loop clients, {args.seconds:g} s per case:"
    )
    print("| request | requests/s | p50 ms | p99 ms | statuses | target |")
    print("|---|---|---|---|---|---|")
    failed = False
    for name, r in results:
        target = ""
        if name.startswith("CDS"):
            target = "p99 ≤ 500 ms: " + ("met" if r.p99_ms <= TARGET_CDS_P99_MS else "missed")
        failed |= set(r.statuses) != {200}
        print(
            f"| {name} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
            f"{dict(sorted(r.statuses.items()))} | {target} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
