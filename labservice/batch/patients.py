"""The patient ids a batch's results show, noted while it runs, for the audit trail.

A download of a batch's results shows every patient id of the file, stored or not (``?store=false``, or CBCs
an earlier upload already stored). The audit trail records one row per patient per request, so the store keeps
the distinct ids beside the results (``patients.json``, see labservice.batch.results_store) and every read of the batch
names them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from labservice.adapters.csv_input.rows import ParsedChunk
from labservice.batch.chunk import Interpreted, KeepRows, StagedKeep


class PatientIds:
    """Collects the distinct patient ids of the chunks a run reads."""

    def __init__(self) -> None:
        self._seen: dict[str, None] = {}

    def keeping(self, keep_rows: KeepRows | None) -> KeepRows:
        """A KeepRows for run_batch that notes each chunk's patient ids, then stores through `keep_rows` (if any).
        A StagedKeep stays one (the ids are noted in its store stage, which runs in file order)."""
        if isinstance(keep_rows, StagedKeep):

            def note_and_store(parsed: ParsedChunk, prepared: Any, store: Callable[[ParsedChunk, Any], int]) -> int:
                self.note(parsed)
                return store(parsed, prepared)

            return keep_rows.storing_with(note_and_store)

        def note_and_keep(parsed: ParsedChunk, interpreted: Interpreted, errors: np.ndarray) -> int:
            self.note(parsed)
            return keep_rows(parsed, interpreted, errors) if keep_rows is not None else 0

        return note_and_keep

    def note(self, parsed: ParsedChunk) -> None:
        if parsed.patient_ids is None:
            return
        for value in parsed.patient_ids:
            if value is None or value != value:  # None or NaN: no id on this row
                continue
            text = str(value).strip()
            if text:
                self._seen[text] = None

    def ids(self) -> list[str]:
        """The distinct ids, in the order first read."""
        return list(self._seen)
