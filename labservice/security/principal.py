"""Who is making the current request, as every other security part sees it.

Authentication (API keys, dashboard sign-in, CDS Hooks JWTs) sets `g.principal`; the audit trail,
rate limits and idempotency read it through `current_principal()`. Views say which patients a
request touched with `touched_patients(...)`, and the audit trail records one row per patient.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flask import g

SCOPES = ("interpret", "read", "admin", "metrics")


@dataclass(frozen=True)
class Principal:
    kind: str  # "api_key", "user", "cds_client" or "anonymous"
    name: str  # key name, username, JWT issuer (no secret, no patient data)
    scopes: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        """Stable text for rate limits, idempotency owners and the audit trail: 'api_key:lis-interface'."""
        return f"{self.kind}:{self.name}"

    def has(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


ANONYMOUS = Principal("anonymous", "anonymous")


def current_principal() -> Principal:
    return g.get("principal", ANONYMOUS)


def set_principal(principal: Principal) -> None:
    g.principal = principal


def touched_patients(patient_ids: Iterable[str | None], action: str) -> None:
    """Note that this request read ('read') or changed ('create', 'update') these patients' data."""
    touched = g.setdefault("audit_touched", [])
    for patient in patient_ids:
        if patient:
            touched.append((str(patient), action))


def patients_touched() -> list[tuple[str, str]]:
    """(patient id, action) pairs noted so far in this request, in order, without repeats."""
    return list(dict.fromkeys(g.get("audit_touched", [])))  # linear: a batch can touch 10^5 patients
