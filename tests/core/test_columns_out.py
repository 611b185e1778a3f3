"""The columnar read-out agrees with the JSON answers row for row."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from labservice.core.columns_out import interpretation_frame, undecided_codes
from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import render_interpretations
from tests.core.test_properties import _lesion_table, cbc_rows, lesion
from tests.hypothesis_profiles import examples


@settings(max_examples=examples(60), deadline=None)
@given(rows=st.lists(cbc_rows, min_size=1, max_size=12), data=st.data())
def test_the_frame_says_what_the_json_says(rows, data):
    per_row = [data.draw(st.lists(lesion, max_size=2)) for _ in rows]
    result = interpret_cbc_table(pd.DataFrame(rows), _lesion_table(per_row))
    frame = interpretation_frame(result)
    answers = render_interpretations(result)
    assert len(frame) == len(rows)
    for (_, row), answer in zip(frame.iterrows(), answers, strict=True):
        assert row["urgency"] == answer["urgency"]
        assert row["findings"] == ";".join(f["code"] for f in answer["findings"])
        assert row["aplastic_anemia"] == answer["aplastic_anemia"]["assessment"]
        assert row["skin_attribution"] == answer["skin"]["attribution"]
        undecided = {n["code"] for n in answer["not_assessed"]} & set(undecided_codes(result))
        assert set(filter(None, row["not_assessed"].split(";"))) == undecided
        for analyte, shown in answer["analytes"].items():
            flag = row[f"{analyte}_flag"]
            assert (None if pd.isna(flag) else flag) == shown["flag"]
            if f"{analyte}_ctcae_grade" in frame:
                grade = row[f"{analyte}_ctcae_grade"]
                assert (None if pd.isna(grade) else int(grade)) == shown["ctcae_grade"]


def test_a_frame_of_a_million_rows_is_built_without_per_row_work():
    """Codes are joined once per distinct combination: a large table has few of them."""
    n = 200_000
    table = pd.DataFrame(
        {
            "platelets": np.tile([12.0, 45.0, 140.0, 250.0, np.nan], n // 5),
            "hemoglobin": np.tile([7.5, 9.0, 13.0, 15.0, 11.0], n // 5),
            "sex": "female",
        }
    )
    frame = interpretation_frame(interpret_cbc_table(table))
    assert len(frame) == n
    assert frame["findings"].nunique() <= 5
    # platelets 12 < 20: a new critical value (§3) -> immediate. v2 changes this v1 expectation
    # (`urgent`): clinical-rules.md §9 line 243 (*v2* immediate: "a new critical value").
    assert frame.loc[0, "urgency"] == "immediate"
