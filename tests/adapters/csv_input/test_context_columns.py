"""The treatment context of clinical-rules §11 *v2* (`myelosuppressive_therapy`) as a CSV column, wide and
long, agrees with the JSON `context` object (issue 13: "the same CBC gets the same answer on each path")."""

from __future__ import annotations

import io
import json

import pytest

from labservice.batch import BatchOptions, run_batch
from labservice.services.interpret import interpret_documents

P = pytest.param

# WBC 0.3, neutrophils 0.1, platelets 15, Hb 8.0 in a woman of 40 (the "WBC 0.3 after chemotherapy")
VALUES = {"wbc": 0.3, "neutrophils": 0.1, "platelets": 15.0, "hemoglobin": 8.0}


def batch(text: str) -> list[dict]:
    csv_out, json_out = io.StringIO(), io.StringIO()
    run_batch(io.BytesIO(text.encode()), csv_out=csv_out, json_out=json_out, options=BatchOptions())
    return json.loads(json_out.getvalue())


def json_answer(therapy: bool | None) -> dict:
    results = {k: {"value": v, "unit": None, "reference_range": None} for k, v in VALUES.items()}
    doc = {"patient": {"sex": "female", "age_years": 40}, "results": results}
    if therapy is not None:
        doc["context"] = {"myelosuppressive_therapy": therapy}
    return interpret_documents([doc])[0]


def wide(header: str, cells: list[str]) -> str:
    lines = [f"patient_id,sex,age,wbc,neutrophils,platelets,hemoglobin,{header}"]
    lines += [f"P{i},F,40,0.3,0.1,15,8.0,{cell}" for i, cell in enumerate(cells)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "header",
    [
        P("myelosuppressive_therapy", id="§11 v2 CSV column myelosuppressive_therapy"),
        P("Myelosuppressive therapy", id="§11 v2 CSV header 'Myelosuppressive therapy'"),
        P("myelosuppressive treatment", id="§11 v2 CSV header 'myelosuppressive treatment'"),
    ],
)
def test_wide_column_agrees_with_json(header: str) -> None:
    rows = batch(wide(header, ["yes", "no", ""]))
    for row, therapy in zip(rows, (True, False, None), strict=True):
        answer = json_answer(therapy)
        assert row["error"] is None
        assert row["urgency"] == answer["urgency"]
        assert row["findings"] == [f["code"] for f in answer["findings"]]
        assert row["aplastic_anemia"] == answer["aplastic_anemia"]["assessment"]
    # §11 v2: on treatment the AA assessment is not_applicable and the critical nadir asks for urgent
    assert [row["aplastic_anemia"] for row in rows] == ["not_applicable", "very_severe", "very_severe"]
    assert [row["urgency"] for row in rows] == ["urgent", "immediate", "immediate"]


def test_long_shape_carries_the_column() -> None:
    lines = ["patient_id,sex,age,myelosuppressive_therapy,item,value,unit"]
    for pid, therapy in (("A", "true"), ("B", "false")):
        lines += [f"{pid},F,40,{therapy},{item},{value}," for item, value in VALUES.items()]
    rows = batch("\n".join(lines) + "\n")
    assert [row["aplastic_anemia"] for row in rows] == ["not_applicable", "very_severe"]
    assert [row["urgency"] for row in rows] == [json_answer(True)["urgency"], json_answer(False)["urgency"]]


def test_a_bad_cell_is_an_error_naming_the_column() -> None:
    rows = batch(wide("myelosuppressive_therapy", ["perhaps"]))
    assert rows[0]["error"] and "myelosuppressive_therapy" in rows[0]["error"]
