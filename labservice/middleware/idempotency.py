"""`Idempotency-Key` on the requests that store: a retry gets the first answer, and nothing is stored twice.

Follows the IETF draft "The Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header):

- The header is a Structured Field String, ``Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"``; the
  bare form (no quotes) is accepted too, as most clients send it. 1 to 255 printable ASCII characters; one
  header per request. Anything else answers 400. A UUID (v4) per operation is what clients should send.
- A key belongs to its owner, the caller's principal (``current_principal().id``): two API keys cannot
  see each other's answers, whatever keys they choose.
- The first request with a key runs and its answer (status, content type, body, the view's headers such as
  ``Location``) is kept. A retry with the same key and the same request (method, path, query, content type,
  ``Accept`` and a SHA-256 of the body; multipart bodies are compared with their boundary taken out, since
  clients draw a new one each time) gets that answer again with ``Idempotent-Replayed: true``: the view
  does not run, so nothing is stored twice.
- The same key with a different request answers 422. A retry while the first request still runs answers
  409 with ``Retry-After``.
- 5xx answers are not kept (a retry may then succeed). If a worker dies mid-request (killed, out of
  memory), its claim on the key is taken over by the next retry: at once on the same machine, where the
  record names the process (``claimed_by``) and /proc says it is gone; elsewhere after
  ``IDEMPOTENCY_LEASE_SECONDS`` (until then retries get 409). Records expire after
  ``IDEMPOTENCY_TTL_HOURS`` (24) and are deleted lazily, at most once a minute per process.

It is one wrapper around the views of `IDEMPOTENT_ENDPOINTS` (registered by `register_idempotency`),
inside the request's before_request hooks, so authentication has set the principal and rate limits have
applied before a key is claimed; a request refused there (401, 403, 429) never touches a key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from apispec import BasePlugin
from flask import Flask, current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from labservice.errors import problem_response
from labservice.extensions import current_database
from labservice.security.principal import current_principal, patients_touched, touched_patients
from labservice.store.models import IdempotencyRecord
from labservice.store.repository import as_utc, now_utc

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
#: The endpoints that honour the header, each with the config key of its body limit.
IDEMPOTENT_ENDPOINTS: dict[str, str] = {
    "interpretations.create_interpretations": "MAX_CONTENT_LENGTH",
    "fhir.interpret_fhir": "MAX_CONTENT_LENGTH",
    "hl7v2.interpret_hl7v2": "MAX_CONTENT_LENGTH",
    "batches.create_batch": "MAX_UPLOAD_BYTES",
    "referrals.update_referral": "MAX_CONTENT_LENGTH",
}
#: Headers of the first answer not kept for replays (recomputed, or never to be replayed).
NOT_KEPT_HEADERS = frozenset({"content-type", "content-length", "set-cookie", "date", "server"})
#: Bodies up to this size are spooled in memory while they are hashed; larger ones go to a temporary file.
SPOOL_IN_MEMORY = 1024 * 1024
READ_BLOCK = 1 << 16
#: Seconds between two deletions of expired records by one process.
PURGE_INTERVAL = 60.0
#: Tries of a claim that lost a race on the (owner, key) unique constraint.
CLAIM_ATTEMPTS = 3


class MalformedKey(ValueError):
    """The Idempotency-Key header is malformed (the message says how)."""


def parse_key(values: list[str]) -> str:
    """The key from the header's values: one Structured Field String (RFC 8941 §3.3.3), or a bare token."""
    if len(values) != 1:
        raise MalformedKey(f"send one {HEADER} header, not {len(values)}")
    value = values[0].strip()
    if value.startswith('"'):
        key = _sf_string(value)
    else:
        if "," in value:  # what a server makes of several headers; an Item is one value
            raise MalformedKey(f"send one {HEADER} header with one key (a comma separates several)")
        if any(not 0x21 <= ord(char) <= 0x7E for char in value):
            raise MalformedKey("a key without quotes is printable ASCII without spaces, quotes or commas")
        if '"' in value:
            raise MalformedKey("a quoted key starts and ends with a double quote")
        key = value
    if not key:
        raise MalformedKey("the key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise MalformedKey(f"the key is {len(key)} characters long; at most {MAX_KEY_LENGTH}")
    return key


def _sf_string(value: str) -> str:
    out = []
    position = 1
    while position < len(value):
        char = value[position]
        if char == "\\":
            if position + 1 >= len(value) or value[position + 1] not in '"\\':
                raise MalformedKey('in a quoted key a backslash escapes only " and \\')
            out.append(value[position + 1])
            position += 2
            continue
        if char == '"':
            if value[position + 1 :].lstrip().startswith(","):
                raise MalformedKey(f"send one {HEADER} header with one key (a comma separates several)")
            if position != len(value) - 1:
                raise MalformedKey("characters after the closing quote")
            return "".join(out)
        if not 0x20 <= ord(char) <= 0x7E:
            raise MalformedKey("a key is printable ASCII")
        out.append(char)
        position += 1
    raise MalformedKey("the quoted key has no closing quote")


# --- the request's fingerprint ---------------------------------------------------------------------


class _BodyDigest:
    """SHA-256 of a body fed in blocks; a multipart body's boundary is replaced by a fixed marker (one that
    no boundary can contain), so the same form sent twice with two boundaries gives one digest."""

    def __init__(self, boundary: str | None) -> None:
        self.digest = hashlib.sha256()
        self.delimiter = b"--" + boundary.encode("utf-8") if boundary else b""
        self.carry = b""

    def update(self, block: bytes) -> None:
        if not self.delimiter:
            self.digest.update(block)
            return
        buffer = (self.carry + block).replace(self.delimiter, b"--\x00")
        keep = len(self.delimiter) - 1  # a delimiter cut by the block's end is completed by the next block
        self.digest.update(buffer[:-keep] if len(buffer) > keep else b"")
        self.carry = buffer[-keep:] if len(buffer) > keep else buffer

    def hexdigest(self) -> str:
        self.digest.update(self.carry)
        self.carry = b""
        return self.digest.hexdigest()


def spool_body(limit: int | None) -> tuple[str, IO[bytes]]:
    """Read this request's body once (at most `limit` bytes, else RequestEntityTooLarge), hashing it, and put
    it back as the request's input so the view reads it as sent: (body digest, the spooled copy)."""
    environ = request.environ
    stream = get_input_stream(environ, max_content_length=limit)
    boundary = request.mimetype_params.get("boundary") if request.mimetype.startswith("multipart/") else None
    digest = _BodyDigest(boundary)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (the caller closes it)
    size = 0
    try:
        while block := stream.read(READ_BLOCK):
            size += len(block)
            spool.write(block)
            digest.update(block)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    environ["wsgi.input"] = spool
    environ["CONTENT_LENGTH"] = str(size)
    environ.pop("wsgi.input_terminated", None)
    request.__dict__.pop("stream", None)  # werkzeug caches the stream; it must be made from the copy
    return digest.hexdigest(), spool


def fingerprint(body_digest: str) -> str:
    """What makes two requests the same: method, path, query (in order of names), content type (without a
    multipart boundary), Accept, and the body's digest."""
    params = {name: value for name, value in request.mimetype_params.items() if name.lower() != "boundary"}
    parts = [
        request.method,
        request.path,
        sorted(request.args.items(multi=True)),
        request.mimetype,
        sorted(params.items()),
        request.headers.get("Accept", ""),
        body_digest,
    ]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=True).encode("ascii")).hexdigest()


# --- which process runs a claimed request ---------------------------------------------------------


def _stat_start(pid: int | str) -> str:
    """The start time of a process (field 22 of /proc/<pid>/stat, in clock ticks since boot)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


@functools.cache
def _machine() -> tuple[str, ...] | None:
    """What identifies this machine's process table: host name, boot id, PID namespace (None without /proc)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return socket.gethostname(), boot, namespace


def process_identity() -> str | None:
    """This process, as a claim records it: 'host|boot id|pid namespace|pid|start time' (None without /proc)."""
    machine = _machine()
    if machine is None:
        return None
    try:
        start = _stat_start("self")
    except (OSError, IndexError):
        return None
    return "|".join((*machine, str(os.getpid()), start))[:200]


def claimant_is_gone(claimed_by: str | None) -> bool:
    """True when the process a claim names ran on this machine and no longer runs (its pid is gone, or is
    another process now). A claim from another machine, or without a name, is never judged here."""
    machine = _machine()
    if not claimed_by or machine is None:
        return False
    parts = claimed_by.split("|")
    if len(parts) != 5 or tuple(parts[:3]) != machine:
        return False
    pid, start = parts[3], parts[4]
    try:
        return _stat_start(pid) != start
    except (OSError, IndexError):
        return True


# --- the records -----------------------------------------------------------------------------------


class _TakenMeanwhile(Exception):
    """Another request took over an expired or abandoned record first."""


@dataclass
class Claim:
    """What the records say about a key: `new` (this request runs; `record_id` is its claim), `replay`
    (`record` holds the first answer), `running` (`retry_after` seconds) or `mismatch`."""

    outcome: str
    record_id: int | None = None
    record: IdempotencyRecord | None = None
    retry_after: int = 1


def claim_key(
    database, owner: str, key: str, request_hash: str, *, now: datetime, ttl: timedelta, lease: timedelta
) -> Claim:
    """Claim (owner, key) for this request, or say why not. The unique (owner, key) constraint decides a race:
    the loser reads the winner's record and answers from it."""
    for _ in range(CLAIM_ATTEMPTS):
        try:
            with database.session() as session:
                record = session.scalars(
                    select(IdempotencyRecord).where(IdempotencyRecord.owner == owner, IdempotencyRecord.key == key)
                ).first()
                if record is not None:
                    created = as_utc(record.created_at)
                    expired = created is not None and created <= now - ttl
                    abandoned = (
                        record.status is None
                        and record.request_hash == request_hash
                        and ((created is not None and created <= now - lease) or claimant_is_gone(record.claimed_by))
                    )
                    if not (expired or abandoned):
                        return _existing(record, request_hash, now, lease)
                    # Expired, or claimed by a request whose worker died (or whose lease ran out): take it over,
                    # if no one else did (created_at too: SQLite may give a deleted row's id to the next one).
                    taken = session.execute(
                        delete(IdempotencyRecord).where(
                            IdempotencyRecord.id == record.id, IdempotencyRecord.created_at == record.created_at
                        )
                    )
                    if taken.rowcount != 1:
                        raise _TakenMeanwhile
                fresh = IdempotencyRecord(
                    owner=owner,
                    key=key,
                    request_hash=request_hash,
                    status=None,
                    created_at=now,
                    claimed_by=process_identity(),
                )
                session.add(fresh)
                session.flush()
                return Claim("new", record_id=fresh.id)
        except (IntegrityError, _TakenMeanwhile):
            continue  # another request claimed it meanwhile: read its record
    return Claim("running", retry_after=1)


def _existing(record: IdempotencyRecord, request_hash: str, now: datetime, lease: timedelta) -> Claim:
    if record.request_hash != request_hash:
        return Claim("mismatch")
    if record.status is None:
        created = as_utc(record.created_at) or now
        left = (created + lease - now).total_seconds()
        return Claim("running", retry_after=max(1, math.ceil(left)))
    return Claim("replay", record=record)


def complete_key(database, record_id: int, response, patients: list[str]) -> None:
    """Keep the first answer for the retries."""
    headers = [[name, value] for name, value in response.headers.items() if name.lower() not in NOT_KEPT_HEADERS]
    with database.session() as session:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == record_id)
            .values(
                status=response.status_code,
                content_type=response.content_type,
                body=response.get_data(),
                headers=headers,
                patients=patients,
            )
        )


def release_key(database, record_id: int) -> None:
    """Forget a claim whose request failed (5xx): a retry runs again."""
    with database.session() as session:
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))


_last_purge: dict[int, float] = {}


def purge_expired(database, now: datetime, ttl: timedelta) -> None:
    """Delete expired records, at most once every PURGE_INTERVAL seconds per process and database."""
    moment = time.monotonic()
    if moment - _last_purge.get(id(database), -math.inf) < PURGE_INTERVAL:
        return
    _last_purge[id(database)] = moment
    with database.session() as session:
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at <= now - ttl))


# --- the wrapper around the views ------------------------------------------------------------------


def idempotent(view: Callable[..., Any], limit_setting: str) -> Callable[..., Any]:
    """The view, answering retries that carry an Idempotency-Key from the first answer."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        values = request.headers.getlist(HEADER)
        if not values:
            return view(*args, **kwargs)
        try:
            key = parse_key(values)
        except MalformedKey as error:
            return problem_response(
                400, f"The {HEADER} header is malformed: {error}.", {HEADER: [str(error)]}, title=f"Malformed {HEADER}"
            )
        limit = current_app.config.get(limit_setting)
        try:
            body_digest, spool = spool_body(limit)
        except RequestEntityTooLarge:
            return problem_response(413, f"The body is larger than {limit} bytes ({limit_setting}).")
        try:
            return _run_once(view, args, kwargs, key, fingerprint(body_digest))
        finally:
            spool.close()

    return wrapper


def _run_once(view: Callable[..., Any], args: tuple, kwargs: dict, key: str, request_hash: str) -> ResponseReturnValue:
    database = current_database()
    now = now_utc()
    ttl = timedelta(hours=int(current_app.config.get("IDEMPOTENCY_TTL_HOURS", 24)))
    lease = timedelta(seconds=int(current_app.config.get("IDEMPOTENCY_LEASE_SECONDS", 120)))
    purge_expired(database, now, ttl)
    claim = claim_key(database, current_principal().id, key, request_hash, now=now, ttl=ttl, lease=lease)
    if claim.outcome == "mismatch":
        return problem_response(
            422,
            f"This {HEADER} was used with a different request (method, path, query, content type, Accept "
            "or body). Send a new key for a new request; retry a request only unchanged.",
            {HEADER: ["Already used with a different request."]},
            title=f"{HEADER} is already used",
        )
    if claim.outcome == "running":
        return problem_response(
            409,
            f"A request with this {HEADER} is still being processed; retry after it has answered.",
            {HEADER: ["A request with this key is outstanding."]},
            title=f"A request is outstanding for this {HEADER}",
            headers={"Retry-After": str(claim.retry_after)},
        )
    if claim.outcome == "replay" and claim.record is not None:
        return _replay(claim.record)
    assert claim.record_id is not None
    try:
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except Exception as error:  # the app's error handlers make the answer (problem+json, 503)
            response = current_app.make_response(current_app.handle_user_exception(error))
    except BaseException:
        _forget(database, claim.record_id)
        raise
    if response.status_code >= 500 or response.direct_passthrough or response.is_streamed:
        _forget(database, claim.record_id)
        return response
    patients = list(dict.fromkeys(patient for patient, _action in patients_touched()))
    try:
        complete_key(database, claim.record_id, response, patients)
    except Exception as error:  # the work is done; answer it, a retry waits for the lease then runs again
        current_app.logger.warning(
            "idempotency record not completed (%s); the answer is sent anyway", type(error).__name__
        )
    return response


def _forget(database, record_id: int) -> None:
    try:
        release_key(database, record_id)
    except Exception as error:  # the database went away: the claim lapses after the lease
        current_app.logger.warning("idempotency claim not released (%s)", type(error).__name__)


def _replay(record: IdempotencyRecord) -> ResponseReturnValue:
    response = current_app.response_class(record.body or b"", status=record.status, content_type=record.content_type)
    for name, value in record.headers or []:
        response.headers.add(name, value)
    response.headers[REPLAYED_HEADER] = "true"
    touched_patients(record.patients or [], "read")  # the answer shows their data again
    return response


def register_idempotency(app: Flask) -> None:
    """Wrap the views of IDEMPOTENT_ENDPOINTS (after the blueprints are registered)."""
    for endpoint, limit_setting in IDEMPOTENT_ENDPOINTS.items():
        view = app.view_functions.get(endpoint)
        if view is not None:
            app.view_functions[endpoint] = idempotent(view, limit_setting)


# --- the OpenAPI document --------------------------------------------------------------------------

KEY_PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH + 2,
        # A quoted sf-string (printable ASCII, \" and \\ escaped) or bare printable ASCII without a comma.
        "pattern": r'^("([ !#-\[\]-~]|\\["\\])+"|[!#-+\--~]+)$',
        # No `example`: Swagger's Try it out would send the same key every time and get 422 "already used".
    },
    "description": (
        "Makes a retry safe (draft-ietf-httpapi-idempotency-key-header): a Structured Field String "
        f'(`"..."`; the bare form is accepted too) of 1 to {MAX_KEY_LENGTH} printable ASCII characters, '
        'unique per operation (a new UUID v4 for each request, e.g. `"8e03978e-40d5-43e8-bc93-6894a57f9324"`). '
        "A retry with the same key and the same request (method, path, "
        "query, content type, Accept and body) gets the first answer again, with `Idempotent-Replayed: true`, "
        "and stores nothing twice. The same key with another request: 422; while the first request still runs: "
        "409 with Retry-After. 5xx answers are not kept. Keys belong to the caller (the API key) and expire "
        "after IDEMPOTENCY_TTL_HOURS (24)."
    ),
}
REPLAYED_RESPONSE_HEADER = {
    "description": "`true` when this is the kept answer to an earlier request with the same Idempotency-Key",
    "schema": {"type": "string", "enum": ["true"]},
}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
EXTRA_RESPONSES = {
    "400": f"A malformed {HEADER} header (or several).",
    "409": f"A request with the same {HEADER} is still being processed (Retry-After says when to retry).",
    "422": f"The {HEADER} was already used with a different request.",
}


class IdempotencyDocPlugin(BasePlugin):
    """apispec plugin: the Idempotency-Key header parameter, Idempotent-Replayed, and the 400/409/422 answers."""

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        rule = kwargs.get("rule")
        if rule is None or rule.endpoint not in IDEMPOTENT_ENDPOINTS or not operations:
            return
        for method, operation in operations.items():
            if method.lower() not in ("post", "patch") or not isinstance(operation, dict):
                continue
            operation.setdefault("parameters", []).append("IdempotencyKey")  # a $ref to the component
            responses = operation.setdefault("responses", {})
            for status, answer in responses.items():
                if str(status).startswith("2") and isinstance(answer, dict):
                    answer.setdefault("headers", {})[REPLAYED_HEADER] = REPLAYED_RESPONSE_HEADER
            for status, text in EXTRA_RESPONSES.items():
                if status in responses and isinstance(responses[status], dict):
                    responses[status]["description"] = f"{responses[status].get('description', '')} Or: {text}".strip()
                else:
                    responses[status] = {"description": text, "content": PROBLEM}


def document_idempotency(api: Any) -> None:
    """Add the header parameter and the plugin to a flask-smorest Api (before its blueprints)."""
    plugin = IdempotencyDocPlugin()
    plugin.init_spec(api.spec)
    api.spec.plugins.append(plugin)
    api.spec.components.parameter("IdempotencyKey", "header", dict(KEY_PARAMETER))
