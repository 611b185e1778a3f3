"""The floor of a storing interpretation (issue 12 item 2): a plain Flask app with a SQLAlchemy Core write (one
indexed SELECT, three INSERTs, one commit) plus this project's own validation (the CBC schema), parsing, engine
and rendering. bench/api.py serves it with gunicorn beside the real service and compares their costs.

POST /floor takes the same CBC document as POST /api/v1/interpretations (with a patient id and a collection
time): it validates, parses, interprets and renders it as the service does, then in one transaction finds the
patient by its indexed external id (adding the patient the first time only) and inserts the result, its
interpretation and an audit row. No authentication, no rate limit, no delta check, no referral, no duplicate
check: what any storing endpoint would have to pay at the least.

Serve: FLOOR_DATABASE_URL=sqlite:///... gunicorn -w 2 floor_app:app (from bench/, ROOT on PYTHONPATH).
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta

from flask import Flask, Response, request
from sqlalchemy import insert, select

from labservice.adapters.cbc_schema import CBC_SCHEMA
from labservice.adapters.json_cbc import parse_documents
from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import render_interpretations
from labservice.core.ruleset import default_ruleset
from labservice.core.vocabulary import URGENCY_RANK
from labservice.store.database import make_engine
from labservice.store.models import VALUE_COLUMNS, AuditEvent, CbcResult, Interpretation, Patient


def create_floor_app(url: str) -> Flask:
    """The floor app on the database at `url` (migrated beforehand: bench/api.py does it before gunicorn starts)."""
    engine = make_engine(url)
    rs = default_ruleset()
    skew = timedelta(seconds=300)
    app = Flask(__name__)

    @app.post("/floor")
    def floor() -> Response:
        body = request.get_json()
        doc = CBC_SCHEMA.load(body)
        parsed = parse_documents([doc], rs, indexed=False, clock_skew=skew)
        result = interpret_cbc_table(parsed.columns, ruleset=rs)
        answer = render_interpretations(result, parsed.patient_ids, parsed.reported)[0]
        patient = str(parsed.patient_ids[0])
        collected_at = doc.get("collected_at")
        columns = parsed.columns.values
        values = {name: float(columns[name][0]) for name in VALUE_COLUMNS if name in columns}
        values = {name: (None if value != value else value) for name, value in values.items()}
        now = datetime.now(UTC)
        with engine.begin() as connection:
            patient_id = connection.scalar(select(Patient.id).where(Patient.external_id == patient))
            if patient_id is None:  # the first CBC of a patient only
                patient_id = connection.execute(
                    insert(Patient).returning(Patient.id), {"external_id": patient, "created_at": now}
                ).scalar_one()
            cbc_id = connection.execute(
                insert(CbcResult).returning(CbcResult.id),
                {
                    "patient_id": patient_id,
                    "collected_at": collected_at,
                    "received_at": now,
                    "source": "json",
                    "fingerprint": hashlib.sha256(f"{patient}|{collected_at}".encode()).hexdigest(),
                    "raw": body,
                    **values,
                },
            ).scalar_one()
            codes = [finding["code"] for finding in answer["findings"]]
            connection.execute(
                insert(Interpretation),
                {
                    "cbc_id": cbc_id,
                    "ruleset_version": rs.version,
                    "urgency": answer["urgency"],
                    "urgency_rank": URGENCY_RANK[answer["urgency"]],
                    "findings": codes,
                    "not_assessed": [entry["code"] for entry in answer.get("not_assessed", [])],
                    "reason": ", ".join(codes) or "no finding",
                    "answer": answer,
                    "delta": {},
                    "created_at": now,
                },
            )
            connection.execute(
                insert(AuditEvent),
                {
                    "at": now,
                    "actor_type": "anonymous",
                    "actor": "floor",
                    "action": "create",
                    "patient_external_id": patient,
                    "resource": "POST /floor",
                    "status": 200,
                    "remote_addr": request.remote_addr,
                    "request_id": "floor",
                },
            )
        return app.json.response(answer)

    return app


app = create_floor_app(os.environ["FLOOR_DATABASE_URL"]) if os.environ.get("FLOOR_DATABASE_URL") else None
