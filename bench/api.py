"""HTTP benchmark: POST /api/v1/interpretations under gunicorn (2 workers) on loopback, against
the trivial GET /healthz on the same server as the ceiling, measured in the same run.

Usage: python bench/api.py [--seconds 10] [--clients 4]
Target: interpretations at >= 50 % of the ceiling's requests/s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from cbc_data import EXAMPLE_CBC as ONE_CBC  # noqa: E402
from credentials import bearer, create_api_key  # noqa: E402
from loadgen import build_request, run_load  # noqa: E402

NORMAL_CBC = {
    "patient": {"sex": "male", "age_years": 52},
    "results": {
        "platelets": 250,
        "wbc": 6.1,
        "neutrophils": 3.5,
        "lymphocytes": 1.9,
        "hemoglobin": 14.6,
        "hematocrit": 44,
        "rbc": 4.9,
        "mcv": 90,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    folder = tempfile.TemporaryDirectory(prefix="labservice-bench-")
    database_url = f"sqlite:///{Path(folder.name) / 'labservice.sqlite'}"
    auth = bearer(create_api_key(database_url, ("interpret",)))  # the API needs a key (issue 6)
    server = subprocess.Popen(
        [str(gunicorn), "-w", str(args.workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LABSERVICE_DATABASE_URL": database_url,
             "LABSERVICE_RATE_LIMIT": "off", "LABSERVICE_RATE_LIMIT_UPLOADS": "off"},  # capacity, as bench/load.py
    )
    try:
        wait_ready(port)
        time.sleep(1.0)
        cases = [
            ("GET /healthz (ceiling)", [build_request("GET", "/healthz", "127.0.0.1", port)]),
            (
                "POST one CBC (pancytopenia, lesions)",
                [build_request("POST", "/api/v1/interpretations", "127.0.0.1", port, json.dumps(ONE_CBC).encode(),
                               headers=auth)],
            ),
            (
                "POST one CBC (normal)",
                [build_request("POST", "/api/v1/interpretations", "127.0.0.1", port, json.dumps(NORMAL_CBC).encode(),
                               headers=auth)],
            ),
            (
                "POST array of 100 CBCs",
                [
                    build_request(
                        "POST",
                        "/api/v1/interpretations",
                        "127.0.0.1",
                        port,
                        json.dumps([ONE_CBC, NORMAL_CBC] * 50).encode(),
                        headers=auth,
                    )
                ],
            ),
        ]
        run_load("127.0.0.1", port, cases[1][1], seconds=1.0, clients=args.clients)  # warm-up
        results = [
            (name, run_load("127.0.0.1", port, reqs, seconds=args.seconds, clients=args.clients))
            for name, reqs in cases
        ]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        folder.cleanup()
    ceiling = results[0][1].rps
    print(
        f"gunicorn {args.workers} sync workers, {args.clients} closed-loop clients, "
        f"{args.seconds:.0f} s per case, loopback"
    )
    print("| request | requests/s | % of ceiling | p50 ms | p99 ms | statuses |\n|---|---|---|---|---|---|")
    for name, r in results:
        print(
            f"| {name} | {r.rps:,.0f} | {100 * r.rps / ceiling:.0f} % | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{dict(sorted(r.statuses.items()))} |"
        )


if __name__ == "__main__":
    main()
