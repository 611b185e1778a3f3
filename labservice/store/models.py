"""Tables: patients, their CBC results (as sent and normalised), interpretations (with the ruleset
version), batches, and referrals with the history of their status.

A referral is an episode of attention for one patient: it opens when a stored interpretation is
not routine, follows the patient's latest CBC while it is open (new → acknowledged), and closes
when it is referred or dismissed; a later CBC that needs attention opens a new one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Normalised analytes kept as columns (canonical units) for trends and delta checks.
VALUE_COLUMNS = ("platelets", "wbc", "neutrophils", "lymphocytes", "hemoglobin", "hematocrit", "rbc", "mcv",
                 "reticulocytes")
REFERRAL_STATUSES = ("new", "acknowledged", "referred", "dismissed")
OPEN_STATUSES = ("new", "acknowledged")
#: Allowed status changes (new → acknowledged → referred or dismissed; new may go straight to either).
TRANSITIONS = {"new": ("acknowledged", "referred", "dismissed"), "acknowledged": ("referred", "dismissed"),
               "referred": (), "dismissed": ()}


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
    created_at: Mapped[datetime]
    rows_in: Mapped[int] = mapped_column(Integer, default=0)
    rows_out: Mapped[int] = mapped_column(Integer, default=0)
    interpreted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    stored: Mapped[int] = mapped_column(Integer, default=0)  # CBCs with a patient id kept in cbc_results
    summary: Mapped[dict] = mapped_column(JSON)


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
        Index("uq_referrals_one_open", "patient_id", unique=True,
              postgresql_where=text("status IN ('new', 'acknowledged')"),
              sqlite_where=text("status IN ('new', 'acknowledged')")),
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
    status_at: Mapped[datetime | None]

    patient: Mapped[Patient] = relationship()
    interpretation: Mapped[Interpretation] = relationship()
    events: Mapped[list[ReferralEvent]] = relationship(back_populates="referral", order_by="ReferralEvent.at")


class ReferralEvent(Base):
    """Every status change of a referral: who, when, from what to what, and the note."""

    __tablename__ = "referral_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str] = mapped_column(String(12))
    to_status: Mapped[str] = mapped_column(String(12))
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]

    referral: Mapped[Referral] = relationship(back_populates="events")
