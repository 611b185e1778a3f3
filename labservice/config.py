"""Typed configuration defaults, each overridden by a LABSERVICE_<NAME> environment variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from labservice.rule_tables import packaged_directory

ENV_PREFIX = "LABSERVICE_"

#: Where the rule tables live unless REFERENCE_RANGES says otherwise: the copy shipped in the package.
DEFAULT_REFERENCE_RANGES = str(packaged_directory())
#: The instance folder (SQLite database, batches, session key) unless INSTANCE_PATH says otherwise.
DEFAULT_INSTANCE_FOLDER = "instance"


@dataclass(frozen=True)
class Settings:
    """Service settings; field names are Flask config keys."""

    #: Largest request body in bytes (2 MiB); a larger body answers 413.
    MAX_CONTENT_LENGTH: int = 2 * 1024 * 1024
    #: Most CBCs accepted in one array request; more answers 413.
    MAX_BATCH_ITEMS: int = 1000
    #: Directory of the rule tables (reference intervals, thresholds, CTCAE grades); default: the copy shipped in
    #: the package (the repository's reference_ranges/, labservice.rule_tables).
    REFERENCE_RANGES: str = DEFAULT_REFERENCE_RANGES
    #: The instance folder: the embedded SQLite database, batch results, the dashboard's session key, CDS feedback.
    #: Empty means instance/ under the working directory; a relative path is taken from the working directory.
    #: The server and every command (create-key, init-db...) use the same one.
    INSTANCE_PATH: str = ""
    #: The key that signs the dashboard's session cookie (sign-in, CSRF token, flash messages). Empty means a random
    #: key made once and kept in <instance folder>/secret_key, which every worker process of one installation
    #: shares; set it (the same value everywhere) when several machines serve one dashboard behind a load balancer.
    #: Changing it signs every dashboard user out.
    SECRET_KEY: str = ""
    #: Largest CSV upload to POST /api/v1/batches in bytes (256 MiB); a larger upload answers 413.
    #: It applies to that endpoint only: every other request keeps MAX_CONTENT_LENGTH.
    MAX_UPLOAD_BYTES: int = 256 * 1024 * 1024
    #: Where uploaded batches and their results are kept; empty means <instance folder>/batches.
    BATCH_DIRECTORY: str = ""
    #: Batch results (result.csv and result.json, about 12 times the upload) are deleted this many days after the
    #: upload, by the service itself and by `labservice purge`; a download after that answers 410. The CBCs and
    #: referrals a batch stored stay.
    BATCH_RETENTION_DAYS: int = 30
    #: The service purges expired batch results at most once every this many seconds per worker process (lazily,
    #: on a batch upload or look-up: no cron job is needed).
    BATCH_PURGE_INTERVAL_SECONDS: int = 3600
    #: Bytes of batch results one API key (or dashboard user) may keep at a time (16 GiB); an upload that would
    #: go over answers 507 (413 when its results alone are larger) and keeps nothing.
    BATCH_QUOTA_BYTES: int = 16 * 1024 * 1024 * 1024
    #: Where CSV upload jobs wait for the job worker (`labservice worker`, started beside gunicorn by `labservice
    #: serve` and `python3 tasks.py run`): "sqlite" (the file <instance folder>/jobs.sqlite3; no server needed),
    #: "sqlite:///<path>", "redis://host:port/db" (several machines share one queue), or "immediate" (the job runs
    #: inside the upload request: tests and single-process embedding only).
    JOB_QUEUE: str = "sqlite"
    #: Name of the queue (Redis: part of its keys), so several services can share one broker.
    JOB_QUEUE_NAME: str = "labservice-batches"
    #: Job worker threads per `labservice worker` process.
    JOB_WORKERS: int = 1
    #: A running batch job whose worker has not reported for this many seconds is taken over by another worker
    #: (one whose process is gone on the same machine is taken over at once); the chunks it committed are kept.
    BATCH_JOB_LEASE_SECONDS: int = 120
    #: Rows per chunk of a batch job: each chunk's CBCs are stored in one transaction with the job's progress
    #: (memory is bounded by the chunk). On SQLite that transaction holds the one write lock, so other writers
    #: (storing requests, audit rows of reads) wait for one chunk at most: keep a chunk well under the busy timeout.
    BATCH_CHUNK_ROWS: int = 10_000
    #: Processes a storing batch job uses: with 2, a second process interprets the next chunk and renders its
    #: answers while the job's own process stores the current one (about twice as fast on 2 cores); 1: one process.
    BATCH_JOB_PROCESSES: int = 2
    #: Database URL; empty means the SQLite file <instance folder>/labservice.sqlite. DATABASE_URL (no prefix) also
    #: works.
    DATABASE_URL: str = ""
    #: Migrate the database to the newest schema when the app starts (SQLite file created if missing).
    AUTO_MIGRATE: bool = True
    #: Delta checks compare a CBC with the same patient's previous CBC collected within this many days.
    DELTA_WINDOW_DAYS: int = 7
    #: A CBC whose collection time is more than this many seconds ahead of the service's clock is refused (422,
    #: a CSV row error, an HL7 v2 AE): a future-dated CBC would outrank every real result of the patient.
    CLOCK_SKEW_SECONDS: int = 300
    #: HL7 v2: a CSV file of local OBX-3 codes (code, coding_system, analyte, unit) that extends or
    #: overrides reference_ranges/hl7_local_codes.csv; empty means the default map alone.
    HL7_LOCAL_CODES: str = ""
    #: HL7 v2: the time zone (IANA name) of times sent without a UTC offset, e.g. OBR-7 200509210520.
    HL7_TIMEZONE: str = "UTC"
    #: Absolute URL of this service as users reach it (e.g. https://labservice.example.org), for links in
    #: CDS Hooks cards (empty: the host the request came to) and the `aud` of CDS client JWTs (required with
    #: CDS_JWT_ISSUERS: the Host header is the caller's to write).
    PUBLIC_BASE_URL: str = ""
    #: Seconds, in all, that one CDS Hooks call may spend reading the client's FHIR server when prefetch data is
    #: missing (CDS Hooks asks ~500 ms); the connection is cut when they are spent.
    CDS_FHIR_TIMEOUT: int = 3
    #: FHIR servers each CDS client may make the service read (its `fhirServer`), as JSON: {"<client>": ["<base
    #: URL>", ...]}, a client being "api_key:<key name>", "cds_client:<JWT iss>" or "*" (every client). Empty: no
    #: fhirServer is ever read, and calls must carry their data as prefetch.
    CDS_FHIR_SERVERS: str = ""
    #: Non-public networks an allowlisted FHIR server's host may resolve to (e.g. "10.20.0.0/16"); loopback,
    #: link-local and private addresses are refused otherwise, unless the allowlisted URL names the address.
    CDS_FHIR_PRIVATE_NETWORKS: str = ""
    #: Largest answer read from a CDS client's FHIR server, in bytes (4 MiB); a larger one is refused.
    CDS_FHIR_MAX_BYTES: int = 4 * 1024 * 1024
    #: CDS Hooks feedback log (JSON Lines, no patient data); empty means <instance folder>/cds-feedback.jsonl.
    CDS_FEEDBACK_FILE: str = ""
    #: Dashboard session cookie: sent over HTTPS only when true (set it true behind TLS); HttpOnly, SameSite=Lax.
    SESSION_COOKIE_SECURE: bool = False
    SESSION_COOKIE_HTTPONLY: bool = True
    SESSION_COOKIE_SAMESITE: str = "Lax"
    #: A dashboard session ends after this many minutes without a request (sign-out ends it at once).
    SESSION_LIFETIME_MINUTES: int = 480
    #: CDS Hooks clients trusted to call, as JSON: {"<iss>": {"jwks_url": "https://..."} or {"public_key": "<PEM>"}}
    #: (optional "algorithms", default ES384 and RS384, and "jku": other allowlisted JWK Set URLs). Empty: no JWT
    #: is accepted, and CDS calls need an API key with the interpret scope.
    CDS_JWT_ISSUERS: str = ""
    #: Seconds of clock skew allowed on a CDS client JWT's exp and iat.
    CDS_JWT_LEEWAY: int = 60
    #: A CDS client JWT may expire at most this many seconds from now (each call signs a fresh one).
    CDS_JWT_MAX_LIFETIME: int = 300
    #: `labservice mllp` (no HL7 authentication) serves only these peers: addresses or networks, comma-separated.
    MLLP_ALLOWED_PEERS: str = "127.0.0.1,::1"
    #: Most data rows (after the header) in one CSV upload; more answers 413 and nothing is stored.
    MAX_BATCH_ROWS: int = 1_000_000
    #: Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: addresses or networks, comma-separated
    #: (e.g. "127.0.0.1, 10.0.0.0/8"). Empty: the headers are ignored and the peer's address is the client's.
    TRUSTED_PROXIES: str = ""
    #: Seconds a worker keeps an API key it found valid without asking the database again (0: ask on every
    #: request). A revoked key is refused within this many seconds (labservice.security.key_cache).
    API_KEY_CACHE_SECONDS: float = 5.0
    #: Requests per caller (API key, user; anonymous callers by address): N/second|minute|hour|day, or off.
    RATE_LIMIT: str = "600/minute"
    #: CSV uploads per caller, on top of RATE_LIMIT.
    RATE_LIMIT_UPLOADS: str = "30/minute"
    #: Dashboard sign-in attempts per address (behind TRUSTED_PROXIES: the first untrusted X-Forwarded-For hop).
    RATE_LIMIT_SIGN_IN: str = "10/minute"
    #: Dashboard sign-in attempts from all addresses together: each costs an argon2 verification, and a caller
    #: who rotates addresses escapes the per-address limit but not this one.
    RATE_LIMIT_SIGN_IN_GLOBAL: str = "120/minute"
    #: Redis for the rate-limit counts (shared by every worker), e.g. redis://127.0.0.1:6379/0.
    #: Empty: each process counts in its own memory.
    REDIS_URL: str = ""
    #: Prefix of the rate-limit keys in Redis.
    RATE_LIMIT_PREFIX: str = "labservice:ratelimit:"
    #: Strict-Transport-Security max-age in seconds on https requests; 0 (the default) sends none.
    HSTS_SECONDS: int = 0
    #: Seconds to wait for a PostgreSQL connection before a request answers 503 instead of hanging.
    DATABASE_CONNECT_TIMEOUT: int = 5
    #: SQLite: seconds a write waits for another writer's lock (a batch upload holds it while it is stored).
    #: Below gunicorn's 30 s worker timeout, so a request that waited this long still answers 503 instead of
    #: having its worker killed and its connection cut.
    DATABASE_BUSY_TIMEOUT: int = 20
    #: Idempotency-Key records (the first answer to a keyed request) are kept this many hours, then deleted.
    IDEMPOTENCY_TTL_HOURS: int = 24
    #: A keyed request still unanswered after this many seconds is taken to have died (its worker killed): a
    #: retry then runs it again instead of answering 409. On the same machine a dead worker's claim is taken
    #: over at once.
    IDEMPOTENCY_LEASE_SECONDS: int = 120
    #: Load shedding: a request that waited longer than this many milliseconds for a worker, counted from the
    #: X-Request-Start stamp of the front or proxy (labservice.serving.queue_time), is answered 503 with
    #: Retry-After at once, before any work; the front (labservice.serving.front) refuses the same way a request
    #: it has held that long, or would hold that long at the rate requests are being served.
    QUEUE_TIME_BUDGET_MS: int = 200
    #: The front: most requests handed to gunicorn at once (0: twice the workers); the others wait in the front.
    FRONT_UPSTREAM_CONNECTIONS: int = 0
    #: The front: most requests waiting for gunicorn; one more is refused at once (503, Retry-After).
    FRONT_MAX_WAITING: int = 512
    #: The front: most client connections open at once (slow or idle ones included); more wait in the backlog.
    FRONT_MAX_CONNECTIONS: int = 1024
    #: The front: seconds a client has to send a request's line and headers (all of them), and the longest
    #: silence allowed while it sends the body; then the connection is closed (408 when nothing was answered).
    FRONT_HEADER_TIMEOUT: int = 10
    FRONT_BODY_TIMEOUT: int = 30
    #: Title and version shown in the OpenAPI document.
    API_TITLE: str = "labservice"
    API_VERSION: str = "v1"


#: flask-smorest settings: OpenAPI 3 document at /api/v1/openapi.json, Swagger UI at /api/docs.
OPENAPI_SETTINGS: dict[str, Any] = {
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "v1/openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    # Served by the service itself (labservice.api.swagger_assets): no CDN on a hospital network.
    "OPENAPI_SWAGGER_UI_URL": "/api/docs/assets/",
}


def _coerce(raw: str, kind: type, name: str) -> Any:
    if kind is bool:
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"{ENV_PREFIX}{name}={raw!r} is not true or false")
        return raw.lower() in ("1", "true", "yes")
    if kind is int:
        try:
            number = int(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name}={raw!r} is not an integer") from None
        if number < 1:
            raise ValueError(f"{ENV_PREFIX}{name}={raw!r} must be a positive integer")
        return number
    if kind is float:
        try:
            seconds = float(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name}={raw!r} is not a number") from None
        if not seconds >= 0:
            raise ValueError(f"{ENV_PREFIX}{name}={raw!r} must be 0 or more")
        return seconds
    return raw


def instance_path(settings: Mapping[str, Any]) -> Path:
    """The absolute instance folder of these settings (INSTANCE_PATH, else instance/ in the working directory)."""
    return Path.cwd() / (settings.get("INSTANCE_PATH") or DEFAULT_INSTANCE_FOLDER)


def load_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Defaults, overridden by LABSERVICE_* environment variables, as a Flask config mapping."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = dict(OPENAPI_SETTINGS)
    if environ.get("DATABASE_URL") and not environ.get(ENV_PREFIX + "DATABASE_URL"):
        environ = {**environ, ENV_PREFIX + "DATABASE_URL": environ["DATABASE_URL"]}
    defaults = Settings()
    for spec in fields(Settings):
        value = getattr(defaults, spec.name)
        raw = environ.get(ENV_PREFIX + spec.name)
        if raw is not None and raw != "":
            value = _coerce(raw, type(value), spec.name)
        out[spec.name] = value
    return out
