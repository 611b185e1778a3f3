"""Tables: patients, their CBC results (as sent and normalised), interpretations (with the ruleset
version), batches, and referrals with the history of their status.

A referral is an episode of attention for one patient: it opens when a stored interpretation is
not routine, keeps the highest urgency of the patient's CBCs while it is open (new → acknowledged), and closes
when it is referred or dismissed; a later CBC that needs attention opens a new one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Normalised analytes kept as columns (canonical units) for trends and delta checks.
VALUE_COLUMNS = (
    "platelets",
    "wbc",
    "neutrophils",
    "lymphocytes",
    "hemoglobin",
    "hematocrit",
    "rbc",
    "mcv",
    "reticulocytes",
)
REFERRAL_STATUSES = ("new", "acknowledged", "referred", "dismissed")
OPEN_STATUSES = ("new", "acknowledged")
#: Allowed status changes (new → acknowledged → referred or dismissed; new may go straight to either).
TRANSITIONS = {
    "new": ("acknowledged", "referred", "dismissed"),
    "acknowledged": ("referred", "dismissed"),
    "referred": (),
    # Undoing a dismissal puts the referral back to the status it had before (issue 14 item 8): only that one,
    # and only while the patient has no other open referral.
    "dismissed": ("new", "acknowledged"),
}
#: Why a referral is dismissed: a dismissal needs one (issue 14 item 8); `other` needs the note to say why.
DISMISS_REASONS = {
    "already_managed": "known and already being managed",
    "expected": "expected in this patient (e.g. a treatment nadir)",
    "not_current": "not current, or a duplicate of a result already dealt with",
    "sample_problem": "a sample problem: a repeat is ordered",
    "other": "other (the note says why)",
}


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True)}  # noqa: RUF012 (SQLAlchemy's own class attribute)


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)  # the id the client sent
    sex: Mapped[str | None] = mapped_column(String(10))
    age_years: Mapped[float | None] = mapped_column(Float)  # at the latest CBC
    created_at: Mapped[datetime]

    results: Mapped[list[CbcResult]] = relationship(back_populates="patient", order_by="CbcResult.collected_at")


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(index=True)  # the retention counts from here
    rows_in: Mapped[int] = mapped_column(Integer, default=0)
    rows_out: Mapped[int] = mapped_column(Integer, default=0)
    interpreted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    stored: Mapped[int] = mapped_column(Integer, default=0)  # CBCs with a patient id kept in cbc_results
    summary: Mapped[dict] = mapped_column(JSON)
    #: False for an upload with ?store=false (its CBCs were not kept): part of the batch's identity.
    store_requested: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    #: Who uploaded it (principal id, e.g. api_key:lis-interface): its results count against that quota.
    owner: Mapped[str | None] = mapped_column(String(220), index=True)
    #: Bytes of its result files while they are kept (0 for batches made before this was counted).
    result_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    #: When its result files were deleted (BATCH_RETENTION_DAYS); its stored CBCs and referrals stay.
    purged_at: Mapped[datetime | None]


class CbcResult(Base):
    __tablename__ = "cbc_results"
    __table_args__ = (
        UniqueConstraint("patient_id", "fingerprint", name="uq_cbc_results_patient_fingerprint"),
        Index("ix_cbc_results_patient_collected", "patient_id", "collected_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    collected_at: Mapped[datetime | None]
    received_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(20))  # json, batch, fhir, hl7v2
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), index=True)
    #: sha256 of the patient, collection time and values: the same result posted twice is stored once.
    fingerprint: Mapped[str] = mapped_column(String(64))
    raw: Mapped[dict] = mapped_column(JSON)  # the results and context as sent
    age_years: Mapped[float | None] = mapped_column(Float)
    platelets: Mapped[float | None] = mapped_column(Float)
    wbc: Mapped[float | None] = mapped_column(Float)
    neutrophils: Mapped[float | None] = mapped_column(Float)
    lymphocytes: Mapped[float | None] = mapped_column(Float)
    hemoglobin: Mapped[float | None] = mapped_column(Float)
    hematocrit: Mapped[float | None] = mapped_column(Float)
    rbc: Mapped[float | None] = mapped_column(Float)
    mcv: Mapped[float | None] = mapped_column(Float)
    reticulocytes: Mapped[float | None] = mapped_column(Float)

    patient: Mapped[Patient] = relationship(back_populates="results")
    interpretations: Mapped[list[Interpretation]] = relationship(back_populates="cbc")


class Interpretation(Base):
    __tablename__ = "interpretations"
    __table_args__ = (UniqueConstraint("cbc_id", "ruleset_version", name="uq_interpretations_cbc_ruleset"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cbc_id: Mapped[int] = mapped_column(ForeignKey("cbc_results.id", ondelete="CASCADE"), index=True)
    ruleset_version: Mapped[str] = mapped_column(String(40))
    urgency: Mapped[str] = mapped_column(String(12))
    urgency_rank: Mapped[int] = mapped_column(Integer)  # 0 routine … 3 immediate
    findings: Mapped[list] = mapped_column(JSON)  # finding codes
    not_assessed: Mapped[list] = mapped_column(JSON)  # finding codes that could not be decided
    reason: Mapped[str] = mapped_column(Text)  # one line for the worklist
    answer: Mapped[dict] = mapped_column(JSON)  # the interpretation as answered (contract JSON)
    delta: Mapped[dict] = mapped_column(JSON)  # delta checks against the previous CBC
    created_at: Mapped[datetime]

    cbc: Mapped[CbcResult] = relationship(back_populates="interpretations")


class Referral(Base):
    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_worklist", "status", "urgency_rank", "collected_at"),
        Index("ix_referrals_patient_status", "patient_id", "status"),
        # One open referral per patient, enforced by the database (partial unique index).
        Index(
            "uq_referrals_one_open",
            "patient_id",
            unique=True,
            postgresql_where=text("status IN ('new', 'acknowledged')"),
            sqlite_where=text("status IN ('new', 'acknowledged')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    interpretation_id: Mapped[int] = mapped_column(ForeignKey("interpretations.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(12), default="new")
    urgency: Mapped[str] = mapped_column(String(12))
    urgency_rank: Mapped[int] = mapped_column(Integer)
    findings: Mapped[list] = mapped_column(JSON)
    #: ";code;code;" so a finding filters with LIKE on SQLite and PostgreSQL alike.
    finding_codes: Mapped[str] = mapped_column(String(600), default=";")
    reason: Mapped[str] = mapped_column(Text)
    collected_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)
    status_by: Mapped[str | None] = mapped_column(String(200))
    #: Free text the API caller sent as the person it acts for (the body's `actor`): never verified.
    status_on_behalf_of: Mapped[str | None] = mapped_column(String(200))
    status_at: Mapped[datetime | None]

    patient: Mapped[Patient] = relationship()
    interpretation: Mapped[Interpretation] = relationship()
    events: Mapped[list[ReferralEvent]] = relationship(back_populates="referral", order_by="ReferralEvent.at")
    communications: Mapped[list[CriticalCommunication]] = relationship(
        back_populates="referral", order_by="CriticalCommunication.communicated_at"
    )


class ReferralEvent(Base):
    """Every status change of a referral: who, when, from what to what, and the note."""

    __tablename__ = "referral_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str] = mapped_column(String(12))
    to_status: Mapped[str] = mapped_column(String(12))
    note: Mapped[str | None] = mapped_column(Text)
    #: Who made the change, as authenticated: "api_key:<name>", or the signed-in user's name (dashboard).
    actor: Mapped[str] = mapped_column(String(200))
    #: Free text the API caller sent as the person it acts for (the body's `actor`, or X-User): never verified.
    on_behalf_of: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime]

    referral: Mapped[Referral] = relationship(back_populates="events")


#: How a critical result was communicated (CLSI GP47, RCPath G158: the record says by what means).
COMMUNICATION_MEANS = ("telephone", "in_person", "bleep_callback", "secure_message", "other")


class CriticalCommunication(Base):
    """One attempt to communicate a referral's critical result (issue 14 item 9; CLSI GP47, RCPath G158):
    who was told, when, by what means, whether they read the result back, or that nobody could be reached."""

    __tablename__ = "critical_communications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    #: Who was notified (free text: a name and role), or who was tried when `reached` is false.
    notified: Mapped[str] = mapped_column(String(200))
    means: Mapped[str] = mapped_column(String(20))
    reached: Mapped[bool] = mapped_column(Boolean)
    read_back: Mapped[bool] = mapped_column(Boolean)
    communicated_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)
    #: Who recorded it, as authenticated ("api_key:<name>" or the signed-in user).
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime]

    referral: Mapped[Referral] = relationship(back_populates="communications")


# --- security: API keys, dashboard users, the audit trail, idempotent POSTs -------------

API_KEY_SCOPES = ("interpret", "read", "admin", "metrics")
USER_ROLES = ("clinician", "admin")


class ApiKey(Base):
    """An API key: only a hash of its secret is kept. The key is shown once, when it is created."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)  # who or what holds it ("lis-interface")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # the public part, to find the row
    secret_hash: Mapped[str] = mapped_column(String(128))  # hash of the secret part
    scopes: Mapped[list] = mapped_column(JSON)  # subset of API_KEY_SCOPES
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class User(Base):
    """A person who signs in to the dashboard."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(20), default="clinician")  # one of USER_ROLES
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]
    #: Failed sign-ins since the last success, from any address; past a cap, one attempt is weighed at most
    #: every few seconds: `locked_until` is when the next one is (labservice.security.users; migration 0003).
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None]
    #: Sessions started before this moment are void: signing out ends every session of the user.
    sessions_valid_after: Mapped[datetime | None]


class SignInLock(Base):
    """Failed sign-ins of one user from one address, and that pair's lock (migration 0007): guesses from one
    address lock that address out, not the user everywhere. `succeeded_at` marks an address the user has
    signed in from, which the per-user slow-down does not apply to."""

    __tablename__ = "sign_in_locks"
    __table_args__ = (UniqueConstraint("user_id", "address", name="uq_sign_in_locks_user_address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    succeeded_at: Mapped[datetime | None]


class CdsJwtId(Base):
    """The `jti` of each CDS Hooks client JWT accepted, kept until it expires: a replayed JWT is refused."""

    __tablename__ = "cds_jwt_ids"
    __table_args__ = (UniqueConstraint("issuer", "jti", name="uq_cds_jwt_ids_issuer_jti"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(500))
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AuditEvent(Base):
    """Who read or changed which patient's data, when and from where (one row per patient per request)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_patient_at", "patient_external_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(10))  # "api_key", "user" or "anonymous"
    actor: Mapped[str] = mapped_column(String(200))  # key name or username
    action: Mapped[str] = mapped_column(String(20))  # "read", "create", "update", "login", ...
    patient_external_id: Mapped[str | None] = mapped_column(String(200))
    resource: Mapped[str] = mapped_column(String(200))  # route, e.g. "GET /api/v1/referrals/<id>"
    status: Mapped[int] = mapped_column(Integer)
    remote_addr: Mapped[str | None] = mapped_column(String(100))
    request_id: Mapped[str] = mapped_column(String(64))


class IdempotencyRecord(Base):
    """The first answer to a POST sent with an Idempotency-Key, replayed for retries of the same request."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        UniqueConstraint("owner", "key", name="uq_idempotency_owner_key"),
        Index("ix_idempotency_records_created_at", "created_at"),
    )  # migration 0005

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(220))  # the principal, e.g. "api_key:lis-interface"
    key: Mapped[str] = mapped_column(String(255))  # the Idempotency-Key header
    request_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of method, path, query and body
    status: Mapped[int | None] = mapped_column(Integer)  # None while the first request runs
    content_type: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    headers: Mapped[list | None] = mapped_column(JSON)  # [name, value] pairs of the view's answer
    patients: Mapped[list | None] = mapped_column(JSON)  # patient ids the answer showed (audit)
    #: The process running the first request (host|boot id|pid namespace|pid|start time; migration 0006).
    claimed_by: Mapped[str | None] = mapped_column(String(200))


class BatchJob(Base):
    """A CSV upload being interpreted and stored by a job worker (labservice.services.batch_jobs): its state and
    progress, polled at GET /api/v1/batches/<id>. Its id is the batch id (one job per batch)."""

    __tablename__ = "batch_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: queued, running, done or failed.
    status: Mapped[str] = mapped_column(String(16), index=True)
    owner: Mapped[str | None] = mapped_column(String(220))
    filename: Mapped[str | None] = mapped_column(String(300))
    content_sha256: Mapped[str] = mapped_column(String(64))
    #: The mapping document the file is read with (canonical form).
    mapping: Mapped[dict] = mapped_column(JSON)
    store_requested: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The uploaded file, kept until the job ends.
    upload_path: Mapped[str] = mapped_column(String(1000))
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    interpreted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    #: CBCs newly stored: counted in each chunk's own transaction, so never twice.
    stored: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: Renewed by the worker after every chunk; a running job not renewed for BATCH_JOB_LEASE_SECONDS is taken over.
    heartbeat_at: Mapped[datetime | None]
    #: host:pid:token of the worker running it (a dead pid on the same host is taken over at once).
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Problem-style errors of a failed job: [{"field": ..., "detail": ..., "status": ...}].
    errors: Mapped[list] = mapped_column(JSON, default=list)


class BatchJobChunk(Base):
    """A chunk of a job whose rows are committed: written in the same transaction as the rows, so a job resumed
    after a crash skips it and no row is stored twice."""

    __tablename__ = "batch_job_chunks"

    job_id: Mapped[str] = mapped_column(ForeignKey("batch_jobs.id", ondelete="CASCADE"), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    stored: Mapped[int] = mapped_column(Integer, default=0)
