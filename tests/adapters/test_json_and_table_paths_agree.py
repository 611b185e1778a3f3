"""The JSON adapter and a DataFrame handed straight to the engine give the same answers.

Batches (CSV, later) reach the engine as DataFrames; single requests through the JSON adapter.
One engine serves both, so the answers must match field for field.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import render_interpretations
from labservice.services.interpret import interpret_documents
from tests.hypothesis_profiles import examples

ANALYTE_RANGES = {
    "platelets": (1, 1200),
    "wbc": (0.1, 60),
    "neutrophils": (0.01, 30),
    "lymphocytes": (0.01, 10),
    "hemoglobin": (3, 21),
    "reticulocytes": (1, 300),
    "mcv": (60, 120),
    "hematocrit": (20, 70),
    # clinical-rules §10 v2: the differential beyond the five-part count
    "blasts_percent": (0, 20),
    "nrbc_per_100_wbc": (0, 10),
    "reticulocytes_percent": (0.1, 6),
}
SCHISTOCYTE_GRADES = (None, "none", "present", "many")

documents = st.fixed_dictionaries(
    {
        "results": st.dictionaries(
            st.sampled_from(sorted(ANALYTE_RANGES)),
            st.builds(dict, value=st.floats(0.01, 1.0)),
            min_size=1,
        ),
        "patient": st.fixed_dictionaries(
            {
                "sex": st.sampled_from(["female", "male", "unknown"]),
                "age_years": st.one_of(st.none(), st.floats(0.1, 99)),
                "pregnant": st.sampled_from([None, False, True]),
                "duffy_null": st.sampled_from([None, False, True]),
            }
        ),
        "skin": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "fever": st.sampled_from([None, False, True]),
                    "lesions": st.lists(
                        st.fixed_dictionaries(
                            {
                                "type": st.sampled_from([None, "petechiae", "purpura", "ecchymosis"]),
                                "size_mm": st.floats(0.5, 30),
                                "blanching": st.sampled_from([None, False, True]),
                                "palpable": st.sampled_from([None, False, True]),
                            }
                        ),
                        max_size=2,
                    ),
                }
            ),
        ),
        "reticulocyte_method": st.sampled_from([None, "automated", "manual"]),
        # clinical-rules §11 v2: the treatment context travels on every path
        "context": st.fixed_dictionaries(
            {
                "myelosuppressive_therapy": st.sampled_from([None, False, True]),
                # clinical-rules §10 v2: the PLASMIC items the caller states
                "active_cancer": st.sampled_from([None, False, True]),
                "transplant": st.sampled_from([None, False, True]),
                "haptoglobin_undetectable": st.sampled_from([None, False, True]),
                "inr": st.one_of(st.none(), st.sampled_from([1.0, 1.5, 2.0])),
                "creatinine_mg_dl": st.one_of(st.none(), st.sampled_from([1.0, 2.0, 3.0])),
                "indirect_bilirubin_mg_dl": st.one_of(st.none(), st.sampled_from([1.0, 2.0, 3.0])),
            }
        ),
        # clinical-rules §10 v2: the blood film
        "film": st.fixed_dictionaries(
            {
                "schistocytes": st.sampled_from(SCHISTOCYTE_GRADES),
                "schistocytes_percent": st.one_of(st.none(), st.sampled_from([0.0, 1.0, 1.5])),
                "blasts_seen": st.sampled_from([None, False, True]),
                "platelet_count_confirmed": st.sampled_from([None, False, True]),
            }
        ),
        "options": st.fixed_dictionaries({"ctcae_version": st.sampled_from(["5.0", "6.0"])}),
    }
)


def scale(doc: dict) -> dict:
    """Turn the unit-interval draws into values across each analyte's span (canonical units)."""
    for analyte, result in doc["results"].items():
        low, high = ANALYTE_RANGES[analyte]
        result["value"] = round(low + result["value"] * (high - low), 2)
        result["unit"] = None
    return doc


def as_table(docs: list[dict]) -> tuple[pd.DataFrame, dict]:
    tristate = {True: 1.0, False: 0.0, None: np.nan}
    rows, lesions = [], []
    for i, doc in enumerate(docs):
        patient = doc["patient"]
        row = {a: r["value"] for a, r in doc["results"].items()}
        row.update(
            sex=patient["sex"],
            age_years=patient["age_years"],
            pregnant=tristate[patient["pregnant"]],
            duffy_null=tristate[patient["duffy_null"]],
            reticulocyte_method=doc["reticulocyte_method"],
            ctcae_version=doc["options"]["ctcae_version"],
            skin_reported=doc["skin"] is not None,
            fever=tristate[(doc["skin"] or {}).get("fever")],
            myelosuppressive_therapy=tristate[doc["context"]["myelosuppressive_therapy"]],
        )
        film, context = doc["film"], doc["context"]
        grade = film["schistocytes"]
        row.update(
            schistocytes_grade=np.nan if grade is None else float(SCHISTOCYTE_GRADES.index(grade) - 1),
            schistocytes_percent=np.nan if film["schistocytes_percent"] is None else film["schistocytes_percent"],
            blasts_seen=tristate[film["blasts_seen"]],
            platelet_count_confirmed=tristate[film["platelet_count_confirmed"]],
            active_cancer=tristate[context["active_cancer"]],
            transplant=tristate[context["transplant"]],
            haptoglobin_undetectable=tristate[context["haptoglobin_undetectable"]],
            **{
                key: np.nan if context[key] is None else context[key]
                for key in ("inr", "creatinine_mg_dl", "indirect_bilirubin_mg_dl")
            },
        )
        rows.append(row)
        for lesion in (doc["skin"] or {}).get("lesions", []):
            lesions.append(
                {
                    "row": i,
                    "type": lesion["type"] or "",
                    "size_mm": lesion["size_mm"],
                    "blanching": tristate[lesion["blanching"]],
                    "palpable": tristate[lesion["palpable"]],
                }
            )
    frame = pd.DataFrame(rows)
    table = {
        key: np.array([item[key] for item in lesions], dtype=object if key == "type" else float)
        for key in ("row", "type", "size_mm", "blanching", "palpable")
    }
    table["row"] = table["row"].astype(np.int64)
    return frame, table


def comparable(answer: dict) -> dict:
    answer = {k: v for k, v in answer.items() if k not in ("id", "patient_id")}
    answer["analytes"] = {a: {k: v for k, v in d.items() if k != "reported"} for a, d in answer["analytes"].items()}
    answer["skin"] = {
        **answer["skin"],
        "lesions": [{k: v for k, v in lesion.items() if k != "site"} for lesion in answer["skin"]["lesions"]],
    }
    return answer


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(documents, min_size=1, max_size=8))
def test_json_documents_and_a_dataframe_of_the_same_cbcs_agree(docs):
    docs = [scale(doc) for doc in docs]
    via_json = interpret_documents(docs, indexed=True)
    frame, lesions = as_table(docs)
    via_table = render_interpretations(interpret_cbc_table(frame, lesions))
    assert [comparable(a) for a in via_json] == [comparable(a) for a in via_table]
