"""A collection time may not lie ahead of the service's clock by more than a small skew.

A CBC dated in the future (an analyser whose clock runs ahead, or a hostile client) would sort as the patient's
newest result for as long as that future lasts: delta checks would compare against it and its time would
outrank every real result. Every input path of the service refuses it, naming the field: JSON, FHIR and HL7 v2
over HTTP and MLLP (through `labservice.adapters.json_cbc.parse_documents`) and CSV uploads (a row error,
`labservice.adapters.csv_input.rows`). The skew allowed for clocks that differ a little is the
CLOCK_SKEW_SECONDS setting (5 minutes by default), which the endpoints pass down; the adapters check nothing
without it (`labservice interpret` reads files offline, and the MIMIC-III demo's dates lie in 2102-2202).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def latest_collection(skew: timedelta, now: datetime | None = None) -> datetime:
    """The latest collection time accepted now (UTC)."""
    return (now or datetime.now(UTC)) + skew


def future_message(sent: object, latest: datetime, skew: timedelta) -> str:
    """The error text for a collection time after `latest`."""
    return (
        f"{sent} is in the future: later than the service's clock allows "
        f"({latest.astimezone(UTC).isoformat(timespec='seconds').replace('+00:00', 'Z')}, "
        f"a clock skew of {_duration(skew)}); check the sender's or the analyser's clock"
    )


def _duration(skew: timedelta) -> str:
    seconds = int(skew.total_seconds())
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} seconds"
