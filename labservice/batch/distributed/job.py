"""A Parquet input (a file, a directory or a glob of parts) through the engine with Dask, into a directory of Parquet
parts, and the batch summary computed from what was written.

The graph: one partition per piece of input (parquet_in) → (when rows must meet: long CBCs, wide repeats of an
id) a shuffle on the key → interpret_partition on each partition (the CSV path's own functions) → one Parquet part
per partition. Parts are written to a temporary directory beside the output and renamed over it when every one is
written, so a failed job leaves no partial output. A task that is run again (its worker died) writes its part
again under the same name: every row is written once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import TextIO

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, progress

from labservice.adapters.csv_input.long import film_item_resolver, item_resolver
from labservice.adapters.csv_input.options import BatchFileError, BatchOptions, check_options
from labservice.adapters.csv_input.plan import ColumnPlan, plan_columns
from labservice.adapters.csv_input.wide import numeric_columns
from labservice.batch.chunk import FIRST_ERRORS
from labservice.batch.distributed.locations import Locations
from labservice.batch.distributed.output_frame import output_frame
from labservice.batch.distributed.parquet_in import (
    ORDINAL,
    ParquetInput,
    as_text,
    column_name,
    open_input,
    read_piece,
)
from labservice.batch.distributed.partitions import KEY, PartitionJob, interpret_partition, key_columns, with_key
from labservice.batch.distributed.rulesets import RulesetRef
from labservice.batch.output import OutputLayout
from labservice.batch.runner import FILM_OUTPUT_FIELDS, output_layout
from labservice.batch.summary import DUPLICATE_EXAMPLES, BatchSummary
from labservice.core.ruleset import Ruleset
from labservice.core.table import ANALYTES

#: Rows per partition unless the caller says otherwise (whole row groups are merged up to it).
DEFAULT_PARTITION_ROWS = 100_000


def plan_job(
    spec: str, options: BatchOptions, ruleset: Ruleset, partition_rows: int
) -> tuple[ParquetInput, PartitionJob]:
    """Read the input's footers, resolve its columns; BatchFileError (or MappingError) when it is unusable."""
    check_options(options)
    if partition_rows < 1:
        raise BatchFileError("partition rows must be positive")
    source = open_input(spec, partition_rows)
    plan = plan_columns(source.header, options, ruleset)
    columns = tuple(sorted(set(plan.fields.values())))
    job = PartitionJob(
        plan,
        options,
        RulesetRef.of(ruleset),
        OutputLayout([source.header[i] for i in plan.id_columns], [], False),
        Locations(source.names, source.starts),
        columns,
    )
    return source, job


def _numeric(plan: ColumnPlan) -> frozenset[int]:
    return frozenset(numeric_columns(plan) if plan.shape == "wide" else {plan.fields["value"]})


def _input_meta(source: ParquetInput, job: PartitionJob) -> pd.DataFrame:
    numeric = _numeric(job.plan)
    columns: dict[str, pd.Series] = {}
    for index in job.columns:
        is_number = index in numeric and source.header[index] not in source.text_columns
        columns[column_name(index)] = pd.Series(dtype=np.float64 if is_number else object)
    columns[ORDINAL] = pd.Series(dtype=np.int64)
    return pd.DataFrame(columns)


def _read(piece, source: ParquetInput, numeric: frozenset[int], indexes: tuple[int, ...]) -> pd.DataFrame:
    return read_piece(piece, source, numeric, indexes)


def _items_of(piece, source: ParquetInput, item: int) -> pd.DataFrame:
    """How often each item text occurs in a piece (the text LongFile resolves: stripped, missing as empty)."""
    text = pd.Series(as_text(read_piece(piece, source, frozenset(), (item,))[column_name(item)]), dtype=object)
    counts = text.fillna("").astype(str).str.strip().value_counts()
    return pd.DataFrame({"item": counts.index.astype(object), "count": counts.to_numpy(dtype=np.int64)})


def _long_items(
    source: ParquetInput, job: PartitionJob, ruleset: Ruleset
) -> tuple[list[str], bool, frozenset, Counter]:
    """A pass over the item column alone: the analytes the file holds and whether it has film items (the output's
    columns), the item texts that matter (analytes and film fields: only their rows are shuffled), and the rows
    of every other item, counted as ignored as LongFile counts them."""
    item = job.plan.fields["item"]
    meta = pd.DataFrame({"item": pd.Series(dtype=object), "count": pd.Series(dtype=np.int64)})
    items = dd.from_map(_items_of, source.pieces, args=(source, item), meta=meta, enforce_metadata=False)
    counts = items.groupby("item")["count"].sum().compute()
    resolve, resolve_film = item_resolver(job.options, ruleset), film_item_resolver(job.options)
    seen: set[int] = set()
    kept: set[str] = set()
    ignored: Counter = Counter()
    film = False
    for text, count in counts.items():
        code = resolve(str(text))
        if code >= 0:
            seen.add(code)
            kept.add(str(text))
        elif resolve_film(str(text)) is not None:
            film = True
            kept.add(str(text))
        else:
            ignored[str(text)] += int(count)
    return [ANALYTES[code] for code in sorted(seen)], film, frozenset(kept), ignored


def run_job(
    spec: str,
    output: str | os.PathLike[str],
    *,
    options: BatchOptions,
    ruleset: Ruleset,
    client: Client | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    show_progress: bool = False,
    stream: TextIO | None = None,
) -> BatchSummary:
    """Interpret every row of the Parquet input `spec` into the directory `output` (created; it must not hold files).

    With a client the job runs on its cluster; without one, in this process (Dask's synchronous scheduler).
    Raises BatchFileError when the input is unusable (nothing is written then)."""
    stream = stream or sys.stderr
    source, job = plan_job(spec, options, ruleset, partition_rows)
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BatchFileError(f"{out}: the output directory exists and is not empty")
    settings = {"dataframe.convert-string": False, "dataframe.shuffle.method": "tasks"}
    with dask.config.set(settings), _scheduler(client):
        plan = job.plan
        ignored: Counter = Counter()
        kept: frozenset[str] | None = None
        if plan.shape == "wide":
            analytes, film = plan.analytes, any(f in plan.fields for f in FILM_OUTPUT_FIELDS)
        else:
            analytes, film, kept, ignored = _long_items(source, job, ruleset)
        layout = output_layout(job.layout.id_headers, analytes, film, ruleset)
        job = PartitionJob(plan, job.options, job.ruleset, layout, job.locations, job.columns, kept)
        frame = dd.from_map(
            _read, source.pieces, args=(source, _numeric(plan), job.columns), meta=_input_meta(source, job)
        )
        if plan.shape == "long" or key_columns(plan):
            meta = _input_meta(source, job).assign(**{KEY: pd.Series(dtype=object)})
            frame = frame.map_partitions(with_key, job, meta=meta)
            frame = frame.shuffle(on=KEY, npartitions=frame.npartitions, shuffle_method="tasks")
        schema = pa.Schema.from_pandas(output_frame(None, layout, job.locations), preserve_index=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=".labservice-", suffix=".partial", dir=out.parent))
        try:
            written = [
                dask.delayed(write_partition)(part, job, schema, str(temporary / f"part.{number:05d}.parquet"))
                for number, part in enumerate(frame.to_delayed())
            ]
            total = dask.delayed(merge_partitions)(written, job.plan.shape)
            summary = _compute(total, client, show_progress, stream)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    _describe_input(summary, source, job, ruleset)
    if plan.shape == "long":  # the rows of other items never reached a partition: counted by the item pass
        summary.rows_in = source.rows
        summary.ignored_results += sum(ignored.values())
        ignored.update(summary.ignored_items)
        summary.ignored_items = dict(ignored.most_common(20))
    if out.exists():
        out.rmdir()
    os.replace(temporary, out)
    return summary


def write_partition(frame: pd.DataFrame, job: PartitionJob, schema: pa.Schema, path: str):
    """Interpret one partition and write its rows as one Parquet part; return its counts (small) for the summary.
    Run again (its worker died), it writes the same part again: a row is never written twice."""
    rows, summary, first_errors = interpret_partition(frame, job)
    pq.write_table(pa.Table.from_pandas(rows, schema=schema, preserve_index=False), path)
    return summary, first_errors


def merge_partitions(parts: list, shape: str) -> BatchSummary:
    """The partitions' counts added up as the CSV path adds its chunks' (BatchSummary.merge), the first rejected
    rows and duplicate examples in input order."""
    summary = BatchSummary(shape=shape)
    errors: list[tuple[int, str]] = []
    examples: list[dict] = []
    ignored: Counter = Counter()
    for part, first_errors in parts:
        summary.merge(part, FIRST_ERRORS)
        summary.rows_in += part.rows_in
        summary.duplicates += part.duplicates
        summary.ignored_results += part.ignored_results
        ignored.update(part.ignored_items)
        errors.extend(first_errors)
        examples.extend(part.duplicate_examples)
    summary.first_errors = [text for _, text in sorted(errors)[:FIRST_ERRORS]]
    examples.sort(key=lambda example: example["ordinal"])
    summary.duplicate_examples = [
        {k: v for k, v in example.items() if k != "ordinal"} for example in examples[:DUPLICATE_EXAMPLES]
    ]
    summary.ignored_items = dict(ignored.most_common())  # all (few: film results of no CBC); run_job keeps 20
    return summary


def _describe_input(summary: BatchSummary, source: ParquetInput, job: PartitionJob, ruleset: Ruleset) -> None:
    plan = job.plan
    summary.encoding = "parquet"
    summary.columns_used = plan.used()
    summary.columns_ignored = plan.ignored
    summary.ruleset_version = ruleset.version
    summary.output_columns = list(output_frame(None, job.layout, job.locations).columns)
    summary.bytes_read = sum(os.path.getsize(path) for path in source.files)
    summary.content_sha256 = content_sha256(source.files, source.names)


def content_sha256(files: list[str], names: list[str]) -> str:
    """The input's SHA-256, as the CSV path gives its file's: one file's bytes; for several, the SHA-256 of one line
    per file in input order, `<name as the output names it> NUL <its SHA-256>`, so a renamed, reordered, added or
    changed file changes it."""
    digests = [_file_sha256(path) for path in files]
    if len(files) == 1:
        return digests[0]
    manifest = hashlib.sha256()
    for name, digest in zip(names, digests, strict=True):
        manifest.update(f"{name}\0{digest}\n".encode())
    return manifest.hexdigest()


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _scheduler(client: Client | None):
    if client is None:
        with dask.config.set(scheduler="synchronous"):
            yield
    else:
        with dask.config.set(scheduler=client.get):
            yield


def _compute(total, client: Client | None, show_progress: bool, stream: TextIO) -> BatchSummary:
    """Run the job: on the cluster (Dask's progress bar on `stream`), or in this process."""
    if client is None:
        if not show_progress:
            return total.compute()
        from dask.diagnostics import ProgressBar

        with contextlib.redirect_stdout(stream), ProgressBar():
            return total.compute()
    future = client.compute(total)
    if show_progress:
        with contextlib.redirect_stdout(stream):
            progress(future)
        stream.write("\n")
    return future.result()
