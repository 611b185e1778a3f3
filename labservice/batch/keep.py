"""Keep the rows of a batch that carry a patient id, as the JSON API keeps its CBCs.

The rows are interpreted again as a table of their own (cheap, vectorised) so that each gets the
full answer the JSON API gives (findings with their rules and sources), then stored through the
same repository: once per result, with delta checks and referrals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labservice.adapters.csv_input.cells import parse_dates
from labservice.adapters.csv_input.rows import ParsedChunk
from labservice.batch.chunk import KeepRows
from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import render_interpretations
from labservice.core.ruleset import Ruleset
from labservice.core.table import ANALYTES
from labservice.service import Keep, to_store


#: patients.external_id is String(200); the JSON API's patient.id allows as much.
PATIENT_ID_MAX_LENGTH = 200


class _Parsed:
    """The few attributes of ParsedCbcs that to_store reads."""

    def __init__(self, columns, patient_ids: list[str]) -> None:
        self.columns = columns
        self.patient_ids = patient_ids


def batch_keeper(keep: Keep, rs: Ruleset, date_order: str | None = None) -> KeepRows:
    """A KeepRows for run_batch that stores through `keep` (see labservice.service.keep_in)."""

    def keep_rows(parsed: ParsedChunk, table: dict[str, np.ndarray], errors: np.ndarray) -> int:
        if parsed.patient_ids is None or parsed.n == 0:
            return 0
        ids = pd.Series(parsed.patient_ids, dtype=object)
        text = ids.astype(str)
        # Rows whose id is empty, holds control characters (which PostgreSQL text cannot store) or is longer
        # than patients.external_id holds are interpreted but not kept, as the JSON API refuses such an id.
        has_id = (ids.notna().to_numpy() & (text.str.strip() != "").to_numpy()
                  & ~text.str.contains(r"[\x00-\x1f\x7f]", regex=True).to_numpy()
                  & (text.str.strip().str.len() <= PATIENT_ID_MAX_LENGTH).to_numpy())
        rows = np.flatnonzero(has_id & (errors == None))  # noqa: E711 (elementwise)
        if rows.size == 0:
            return 0
        subset = {name: column[rows] for name, column in table.items()}
        result = interpret_cbc_table(subset, ruleset=rs)
        patients = [str(value).strip() for value in ids.to_numpy()[rows]]
        reported = [{a: {"value": float(result.cols.values[a][i]), "unit": rs.analytes[a].canonical_unit}
                     for a in ANALYTES if a in subset and result.cols.values[a][i] == result.cols.values[a][i]}
                    for i in range(rows.size)]
        answers = render_interpretations(result, patients, reported)
        when = [None] * rows.size
        if parsed.collected_text is not None:
            times, _, _ = parse_dates(pd.Series(parsed.collected_text[rows], dtype=object), date_order)
            when = [None if np.isnat(t) else pd.Timestamp(t, tz="UTC").to_pydatetime() for t in times]
        view = _Parsed(result.cols, patients)
        items = []
        for i, row in enumerate(rows.tolist()):
            doc = {"collected_at": when[i], "patient": {"id": patients[i]}}
            raw = {"line": int(parsed.lines[row]), "values": reported[i]}
            items.append(to_store(doc, raw, view, i, answers[i]))  # type: ignore[arg-type]
        return sum(1 for stored in keep(items) if not stored.duplicate)

    return keep_rows
