"""One partition through the engine, on a worker: the CSV path's own functions, unchanged, on a piece of Parquet.

Wide: parse_wide_chunk → the duplicate check → interpret_chunk. Long: LongFile (grouping into CBCs, pivoting) →
interpret_chunk. Both run on whole CBCs: the job shuffles the rows on the CBC key first (long: the ids and
collection time LongFile groups by; wide: the id columns the duplicate check compares), so every row of a CBC,
and every repeat of an id, is in one partition, and each partition is read in input order. The output rows are
the CSV output's, with the file and row in place of the line (labservice.batch.distributed.output_frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from labservice.adapters.csv_input.long import LongFile
from labservice.adapters.csv_input.options import BatchOptions
from labservice.adapters.csv_input.plan import ColumnPlan
from labservice.adapters.csv_input.reader import RecordChunk
from labservice.adapters.csv_input.wide import parse_wide_chunk
from labservice.batch.chunk import FIRST_ERRORS, interpret_chunk
from labservice.batch.distributed.locations import Locations
from labservice.batch.distributed.output_frame import output_frame
from labservice.batch.distributed.parquet_in import ORDINAL, as_records, column_name
from labservice.batch.distributed.rulesets import RulesetRef, worker_ruleset
from labservice.batch.duplicates import DuplicateCheck
from labservice.batch.output import OutputLayout, RowsOut
from labservice.batch.summary import DUPLICATE_EXAMPLES, BatchSummary

#: The column the job shuffles on: the CBC key (long) or the id key (wide), as text.
KEY = "__key"
DECIMAL = "."  # Parquet numbers are numbers; a text cell with a decimal comma is not a number, as in a "." CSV


@dataclass(frozen=True)
class PartitionJob:
    """What every partition needs, sent to the workers with the task graph (small: no data)."""

    plan: ColumnPlan
    options: BatchOptions
    ruleset: RulesetRef
    layout: OutputLayout
    locations: Locations
    columns: tuple[int, ...]  # the input columns the plan reads
    #: Long files: the item texts (stripped) that carry an analyte or a film field. The other rows are counted
    #: as ignored by the job's item pass and dropped before the shuffle (most rows of a LIS export are not CBCs).
    long_items: frozenset[str] | None = None


def key_columns(plan: ColumnPlan) -> list[int]:
    """The columns whose text makes the shuffle key: the ids and, for a long file, the collection time."""
    names = ["patient_id", "sample_id", "collected_at"]
    return [plan.fields[name] for name in names if name in plan.fields]


def with_key(frame: pd.DataFrame, job: PartitionJob) -> pd.DataFrame:
    """The piece with its shuffle key (a long file: its rows of CBC items only). Rows with the same key text (ids
    and, long, collection time; missing as empty) get the same key, as LongFile groups them and the duplicate
    check compares them; wide rows without any id (the duplicate check skips them) are spread by their ordinal."""
    if job.long_items is not None:
        items = frame[column_name(job.plan.fields["item"])].astype(object).fillna("").astype(str).str.strip()
        frame = frame[items.isin(job.long_items).to_numpy()]
    columns = key_columns(job.plan)
    key = pd.Series("", index=frame.index, dtype=object)
    given = np.zeros(len(frame), dtype=bool)
    for position, index in enumerate(columns):
        cells = frame[column_name(index)].astype(object)
        given |= cells.notna().to_numpy()
        text = cells.fillna("").astype(str)
        if index == job.plan.fields.get("collected_at") and job.plan.shape == "long":
            text = text.str.strip()
        key = text if position == 0 else key + "\x1f" + text
    if job.plan.shape == "wide":
        key = key.where(given, "#" + frame[ORDINAL].astype(str))
    out = frame.copy()
    out[KEY] = key.astype(object)
    return out


def interpret_partition(frame: pd.DataFrame, job: PartitionJob) -> tuple[pd.DataFrame, BatchSummary, list]:
    """Every row of the partition interpreted (or rejected with its reason), as output rows; the partition's
    counts as the CSV path counts a chunk (interpret_chunk's own); and its first rejected rows as (ordinal, text),
    the texts naming files and rows. Duplicate examples keep their ordinal (the job orders them by it)."""
    rs = worker_ruleset(job.ruleset)
    frame = frame.sort_values(ORDINAL, kind="stable")
    records = as_records(frame.drop(columns=[KEY], errors="ignore"))
    parts: list[pd.DataFrame] = []
    summary = BatchSummary(shape=job.plan.shape)
    errors: list[tuple[int, str]] = []  # (ordinal, text) of the first rejected rows
    if job.plan.shape == "wide":
        check = DuplicateCheck()
        for start in range(0, len(frame), job.options.chunk_rows):
            piece = _slice(records, start, start + job.options.chunk_rows)
            parsed = parse_wide_chunk(piece, job.plan, job.options, DECIMAL, rs)
            duplicate_of = check.first_lines(parsed.ids, parsed.lines, np.ones(parsed.n, dtype=bool))
            _repeats(summary, parsed.lines, duplicate_of, job.locations)
            rows = interpret_chunk(parsed, rs, summary, duplicate_of)
            parts.append(output_frame(rows, job.layout, job.locations))
            errors.extend(_first_errors(rows, job.locations, FIRST_ERRORS - len(errors)))
        summary.rows_in = len(frame)
    else:
        long_file = LongFile(job.plan, job.options, DECIMAL, rs)
        if len(frame):
            long_file.add(records)
        for parsed in long_file.chunks(job.options.chunk_rows):
            rows = interpret_chunk(parsed, rs, summary)
            parts.append(output_frame(rows, job.layout, job.locations))
            errors.extend(_first_errors(rows, job.locations, FIRST_ERRORS))
        results = long_file.results
        summary.rows_in = results.results_read
        summary.ignored_results = sum(results.ignored.values())
        summary.ignored_items = dict(results.ignored)
        summary.duplicates = long_file.duplicates
    summary.first_errors = []
    first_errors = sorted(errors)[:FIRST_ERRORS]
    if not parts:
        return output_frame(None, job.layout, job.locations), summary, first_errors
    return (pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]), summary, first_errors


def _first_errors(rows: RowsOut, locations: Locations, count: int) -> list[tuple[int, str]]:
    rejected = np.flatnonzero(pd.notna(rows.errors))
    if rejected.size == 0 or count <= 0:
        return []
    first = rejected[np.argsort(rows.lines[rejected], kind="stable")[:count]]
    texts = locations.relocate(rows.errors[first])
    return [(int(rows.lines[row]), str(text)) for row, text in zip(first, texts, strict=True)]


def _repeats(summary: BatchSummary, lines: np.ndarray, duplicate_of: np.ndarray, locations: Locations) -> None:
    """Count the rows that repeat an earlier row's ids, and keep the first examples (as the CSV path does)."""
    repeat = np.flatnonzero(duplicate_of > 0)
    summary.duplicates += int(repeat.size)
    room = max(0, DUPLICATE_EXAMPLES - len(summary.duplicate_examples))
    if not room or not repeat.size:
        return
    rows = repeat[:room]
    file, row = locations.file_and_row(lines[rows])
    first_file, first_row = locations.file_and_row(duplicate_of[rows])
    for k in range(rows.size):
        summary.duplicate_examples.append(
            {
                "ordinal": int(lines[rows[k]]),
                "source_file": locations.names[int(file[k])],
                "source_row": int(row[k]),
                "duplicate_of": f"{locations.names[int(first_file[k])]} row {int(first_row[k])}",
            }
        )


def _slice(records: RecordChunk, start: int, stop: int) -> RecordChunk:
    if start == 0 and stop >= len(records.lines):
        return records
    frame = records.frame.iloc[start:stop].reset_index(drop=True)
    return RecordChunk(frame, records.lines[start:stop], [], 0)
