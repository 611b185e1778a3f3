"""Storing-interpretation benchmark: POST /api/v1/interpretations of CBCs with a patient id (kept, with the
delta check against the patient's previous CBC) through the Flask test client on a throw-away SQLite file.

Prints the median and 90th percentile milliseconds per request. Each patient gets a CBC a day, so after the
first round every request is compared with a previous CBC in the window (the delta block is assessed).

Usage: python bench/store_request.py [--requests 300] [--patients 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from credentials import bearer, create_api_key  # noqa: E402


def cbc(patient: int, day: int) -> dict:
    when = datetime(2026, 11, 1, 8, tzinfo=UTC) + timedelta(days=day)
    return {
        "patient": {"id": f"BENCH-{patient}", "sex": "female", "age_years": 40},
        "collected_at": when.isoformat().replace("+00:00", "Z"),
        "results": {"platelets": 250 - 20 * (day % 8), "hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--patients", type=int, default=20)
    args = parser.parse_args()
    from labservice.app import create_app

    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/bench.sqlite"
        headers = bearer(create_api_key(url))
        app = create_app({"DATABASE_URL": url, "BATCH_DIRECTORY": f"{directory}/batches"})
        client = app.test_client()
        times = []
        for n in range(args.requests):
            doc = cbc(n % args.patients, n // args.patients)
            started = time.perf_counter()
            response = client.post("/api/v1/interpretations", json=doc, headers=headers)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200 or "stored" not in response.get_json():
                raise SystemExit(f"request {n}: {response.status_code} {response.get_data(as_text=True)[:300]}")
        assessed = response.get_json().get("delta", {}).get("assessed")
    times.sort()
    print(f"{'requests':>10} {'median ms':>10} {'p90 ms':>8} {'last delta assessed':>20}")
    print(
        f"{args.requests:>10} {statistics.median(times):>10.1f} {times[int(len(times) * 0.9)]:>8.1f} {assessed!s:>20}"
    )


if __name__ == "__main__":
    main()
