"""Builders for the clinical boundary tests.

Every expected value in the test_rules_* files comes from /work/shared/clinical-rules.md (cited
per row as §n), never from running the engine. These helpers only build request documents and pick
pieces out of the answer.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from labservice.core import vocabulary

# A CBC with every lineage inside the adult fallback ranges of §2 for both sexes
# (platelets 150-410, WBC 4.0-10.0, neutrophils 2.0-7.0, lymphocytes 1.0-3.0, Hb F 12-15 / M 13-17).
NORMAL: dict[str, float] = {
    "platelets": 250.0,
    "wbc": 6.0,
    "neutrophils": 3.5,
    "lymphocytes": 2.0,
    "hemoglobin": 14.0,
}

# The contract's codes and urgencies; tests/core/test_findings_table.py pins them to api-contract.md.
FINDING_CODES = set(vocabulary.ENGINE_FINDING_CODES)
URGENCIES = vocabulary.URGENCY_NAMES  # lowest first (clinical-rules §9)

COLLECTED_AT = dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)


def female(age: float | None = 34, **kw: Any) -> dict[str, Any]:
    return {"sex": "female", "age_years": age, **kw}


def male(age: float | None = 40, **kw: Any) -> dict[str, Any]:
    return {"sex": "male", "age_years": age, **kw}


def unknown_sex(age: float | None = 40, **kw: Any) -> dict[str, Any]:
    return {"sex": "unknown", "age_years": age, **kw}


def pregnant(trimester: int | None, age: float = 30) -> dict[str, Any]:
    return female(age, pregnant=True, pregnancy_trimester=trimester)


def res(value: float, unit: str | None = None, low: float | None = None, high: float | None = None) -> dict[str, Any]:
    """One result; a reference range only when low or high is given."""
    rr = None if low is None and high is None else {"low": low, "high": high}
    return {"value": float(value), "unit": unit, "reference_range": rr}


def lesion(
    type: str | None = None,
    size_mm: float | None = None,
    *,
    blanching: bool = False,
    palpable: bool = False,
    site: str | None = None,
) -> dict[str, Any]:
    return {"type": type, "size_mm": size_mm, "blanching": blanching, "palpable": palpable, "site": site}


PETECHIAE = lesion("petechiae", 1.5)


def cbc(
    patient: dict[str, Any] | None = None,
    *,
    full: bool = False,
    lesions: list[dict[str, Any]] | None = None,
    fever: bool | None = None,
    clumps: bool | None = None,
    marrow: tuple[float, float | None] | None = None,
    method: str | None = None,
    ctcae: str | None = None,
    collected_at: dt.datetime | None = None,
    **results: Any,
) -> dict[str, Any]:
    """Build one CBC document.

    full=True starts from NORMAL; passing analyte=None removes it. A number means the canonical
    unit; a dict is used as is (see res()).
    """
    values: dict[str, Any] = dict(NORMAL) if full else {}
    values.update(results)
    doc: dict[str, Any] = {
        "patient": patient if patient is not None else female(),
        "results": {k: (v if isinstance(v, dict) else res(v)) for k, v in values.items() if v is not None},
    }
    if collected_at is not None:
        doc["collected_at"] = collected_at
    if lesions is not None or fever is not None:
        doc["skin"] = {"fever": fever, "lesions": lesions or []}
    if clumps is not None:
        doc["specimen"] = {"platelet_clumps": clumps}
    if marrow is not None:
        doc["marrow"] = {"cellularity_percent": marrow[0], "residual_hematopoietic_percent": marrow[1]}
    if method is not None:
        doc["reticulocyte_method"] = method
    if ctcae is not None:
        doc["options"] = {"ctcae_version": ctcae}
    return doc


def interpret_many(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from labservice.services.interpret import interpret_documents  # imported late: engine lands separately

    return interpret_documents(docs)


def interpret(doc: dict[str, Any]) -> dict[str, Any]:
    answers = interpret_many([doc])
    assert len(answers) == 1
    return answers[0]


def input_error() -> type[Exception]:
    from labservice.adapters.errors import InputError

    return InputError


def finding(ans: dict[str, Any], code: str) -> dict[str, Any] | None:
    hits = [f for f in ans["findings"] if f["code"] == code]
    assert len(hits) <= 1, f"{code} emitted {len(hits)} times"
    return hits[0] if hits else None


def codes(ans: dict[str, Any]) -> set[str]:
    return {f["code"] for f in ans["findings"]}


def not_assessed(ans: dict[str, Any], code: str) -> dict[str, Any] | None:
    hits = [n for n in ans.get("not_assessed", []) if n["code"] == code]
    return hits[0] if hits else None


def analyte(ans: dict[str, Any], name: str) -> dict[str, Any]:
    return ans["analytes"][name]


def text_of(obj: Any) -> str:
    return json.dumps(obj, default=str).lower()
