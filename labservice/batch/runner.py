"""Run a CSV file through the engine chunk by chunk: read → parse → interpret → write, memory bounded.

`run_batch` is the one entry point the command line and the HTTP upload share, so both give the
same output for the same file. Reading and the duplicate check run in order in this process; with
`jobs` > 1, parsing (of a wide file), interpreting and formatting each chunk run in worker processes
forked once for the file (labservice.batch.forked), at most `jobs`, each on one chunk while this
process reads the next chunk, and the texts are written back in input order.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import io
import itertools
import multiprocessing
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from typing import IO, Any, TextIO

import numpy as np

from labservice.adapters.csv_input.dialect import SAMPLE_BYTES, sniff
from labservice.adapters.csv_input.line_fields import LineFields
from labservice.adapters.csv_input.long import LongFile
from labservice.adapters.csv_input.options import BatchOptions, check_options
from labservice.adapters.csv_input.plan import ColumnPlan, plan_columns
from labservice.adapters.csv_input.reader import RecordChunk, read_records
from labservice.adapters.csv_input.rows import ParsedChunk
from labservice.adapters.csv_input.wide import numeric_columns, parse_wide_chunk
from labservice.batch.chunk import DERIVABLE, FIRST_ERRORS, Interpreted, KeepRows, StagedKeep, interpret_chunk
from labservice.batch.duplicates import DuplicateCheck
from labservice.batch.forked import CAN_FORK, forked_results
from labservice.batch.output import CsvFormat, JsonFormat, OutputLayout, Sink
from labservice.batch.output_dialect import OutputDialect, begins_with_bom
from labservice.batch.stream import HashingStream, rewound, seekable_source
from labservice.batch.summary import DUPLICATE_EXAMPLES, BatchSummary
from labservice.core.ruleset import Ruleset, default_ruleset
from labservice.core.table import ANALYTES

#: Chunks a storing run prepares ahead of the one it stores (each holds its rows' answers: bounds memory).
STORING_CHUNKS_AHEAD = 1


#: Input fields the output's `film` column describes (the film itself; the PLASMIC context is in the answer).
FILM_OUTPUT_FIELDS = ("schistocytes", "schistocytes_percent", "blasts_seen", "platelet_count_confirmed")


def output_analytes(analytes: list[str]) -> list[str]:
    """The analytes with output columns: those in the file plus those the engine derives from them."""
    present = set(analytes)
    for target, needs in DERIVABLE.items():
        if all(n in present for n in needs):
            present.add(target)
    return [a for a in ANALYTES if a in present]


def output_layout(id_headers: list[str], analytes: list[str], film: bool, ruleset: Ruleset) -> OutputLayout:
    """The output's columns for these id headers and the analytes read (with those derived from them): each value
    column's header names the analyte's canonical unit. The CSV path and the Dask path (batch/distributed) share it."""
    shown = output_analytes(analytes)
    return OutputLayout(
        id_headers, shown, film, {analyte: ruleset.analytes[analyte].canonical_unit for analyte in shown}
    )


def check_readable(source: IO[bytes], options: BatchOptions, ruleset: Ruleset | None = None) -> ColumnPlan:
    """Raise BatchFileError (or MappingError) now when the file cannot be read as CBCs at all, as run_batch would at
    its start: its encoding, delimiter and header (the first block only; the stream is rewound). Returns which
    column holds what."""
    check_options(options)
    rs = ruleset or default_ruleset()
    source.seek(0)
    stream = HashingStream(source)
    dialect = sniff(stream.peek_sample(SAMPLE_BYTES), options, complete=stream.exhausted)
    plan = plan_columns(dialect.header, options, rs)
    source.seek(0)
    return plan


def run_batch(
    source: IO[bytes],
    *,
    csv_out: TextIO | None = None,
    json_out: TextIO | None = None,
    options: BatchOptions | None = None,
    ruleset: Ruleset | None = None,
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
    keep_rows: KeepRows | None = None,
    on_chunk: Callable[[BatchSummary, int], None] | None = None,
    excel: bool = False,
) -> BatchSummary:
    """Interpret every CBC of a CSV file; write one output row per input CBC (or unreadable line).

    The CSV is written with the input's delimiter and decimal mark, and begins with a UTF-8 byte order mark when
    the input did or `excel` asks for one (labservice.batch.output_dialect).

    Raises BatchFileError when the file as a whole is unusable (nothing is written then).
    `keep_rows` (see labservice.batch.keep) stores the rows with a patient id; it runs in this
    process, so it implies one job, unless it is a StagedKeep: then with `jobs` > 1 a worker process
    interprets and prepares the next chunk (renders its answers) while this one stores the current one.
    `on_chunk` is called after every chunk with the summary so far and the bytes read (a batch job reports
    its progress with it).
    """
    if keep_rows is not None and not isinstance(keep_rows, StagedKeep):
        jobs = 1
    options = options or BatchOptions()
    check_options(options)
    rs = ruleset or default_ruleset()
    source = seekable_source(source)
    start = source.tell()
    stream = HashingStream(source)
    sample = stream.peek_sample(SAMPLE_BYTES)
    dialect = sniff(sample, options, complete=stream.exhausted)
    if dialect.encoding == "utf-8-sig":
        stream.check_utf8()
    valid_utf8 = codecs.lookup(dialect.encoding).name in ("utf-8", "utf-8-sig")
    if valid_utf8:
        stream.replace_invalid_utf8()
    bom = begins_with_bom(sample)
    plan = plan_columns(dialect.header, options, rs)
    summary = BatchSummary(
        shape=plan.shape,
        encoding="utf-8" if dialect.encoding == "utf-8-sig" else dialect.encoding,
        delimiter=dialect.delimiter,
        decimal=dialect.decimal,
        bom=bom,
        columns_used=plan.used(),
        columns_ignored=plan.ignored,
        ruleset_version=rs.version,
    )
    summary.check_patient_ids()
    if dialect.encoding_note:
        summary.warnings.append(dialect.encoding_note)
    numeric = numeric_columns(plan) if plan.shape == "wide" else {plan.fields["value"]}
    records = read_records(
        io.BufferedReader(stream, 1 << 20),
        dialect,
        numeric,
        options.chunk_rows,
        reopen=lambda: rewound(source, start),
        quotes_read=lambda: stream.quotes,
        line_fields=LineFields(source, start, dialect, sample).fields,
        valid_utf8=valid_utf8,
    )
    long_file = None
    if plan.shape == "wide":
        analytes = plan.analytes
        tasks: Iterator[tuple[Any, np.ndarray | None]] = _wide_tasks(records, plan, summary)
        parse = partial(parse_wide_chunk, plan=plan, options=options, dialect_decimal=dialect.decimal, rs=rs)
    else:
        long_file = LongFile(plan, options, dialect.decimal, rs)
        for chunk in records:
            long_file.add(chunk)
            if progress:
                progress(stream.bytes_read)
        analytes = long_file.analytes()
        tasks = ((chunk, None) for chunk in long_file.chunks(options.chunk_rows))
        parse = None
    film = bool(long_file.film_fields()) if long_file is not None else any(f in plan.fields for f in FILM_OUTPUT_FIELDS)
    layout = output_layout([dialect.header[i] for i in plan.id_columns], analytes, film, rs)
    summary.output_columns = layout.columns()
    written = OutputDialect(dialect.delimiter, dialect.decimal, bom or excel)
    outputs = [
        (handle, kind(layout, written)) for handle, kind in ((csv_out, CsvFormat), (json_out, JsonFormat)) if handle
    ]
    sinks = [Sink(handle, text_format) for handle, text_format in outputs]
    formats = [text_format for _, text_format in outputs]
    work = partial(_process, parse=parse, rs=rs, formats=formats, keep_rows=keep_rows, decimal=dialect.decimal)
    staged = None
    if isinstance(keep_rows, StagedKeep):
        staged = partial(
            _stored_in_order, parse=parse, rs=rs, formats=formats, keep_rows=keep_rows, decimal=dialect.decimal
        )
    for texts, part in _interpreted(tasks, work, jobs, staged):
        for sink, text in zip(sinks, texts, strict=True):
            sink.write(text)
        summary.merge(part, FIRST_ERRORS)
        if progress and not on_chunk:
            progress(stream.bytes_read)
        if on_chunk:
            on_chunk(summary, stream.bytes_read)
    for sink in sinks:
        sink.close()
    stream.drain()
    _finish(summary, long_file, stream)
    return summary


def _finish(summary: BatchSummary, long_file: LongFile | None, stream: HashingStream) -> None:
    if long_file is None:
        summary.rows_in = summary.rows_out
    else:
        res = long_file.results
        summary.rows_in = res.results_read
        summary.blank_lines = res.blank_lines
        summary.ignored_results = sum(res.ignored.values())
        summary.ignored_items = dict(res.ignored.most_common(20))
        summary.duplicates = long_file.duplicates
    if stream.invalid_utf8_at is not None:
        summary.warnings.append(
            f"the file is not valid UTF-8 from byte {stream.invalid_utf8_at} on: bytes that are not UTF-8 were "
            "read as U+FFFD (a number holding one is rejected; ids and other text keep the replacement); "
            "state the file's encoding (e.g. cp1252) to read them"
        )
    summary.content_sha256 = stream.sha256.hexdigest()
    summary.bytes_read = stream.bytes_read


def _wide_tasks(records: Iterable[RecordChunk], plan: ColumnPlan, summary: BatchSummary):
    """Each chunk of records with the line each row repeats (0 for none): sequential, as it spans chunks."""
    check = DuplicateCheck()
    for chunk in records:
        summary.blank_lines += chunk.blank_lines
        ids = chunk.id_keys(plan.id_columns)  # as parse_wide_chunk reads them; the frame is made there
        first = check.first_lines(ids, chunk.lines, np.ones(len(chunk.lines), dtype=bool))
        repeat = np.flatnonzero(first > 0)
        summary.duplicates += int(repeat.size)
        for row in repeat[: max(0, DUPLICATE_EXAMPLES - len(summary.duplicate_examples))]:
            summary.duplicate_examples.append({"line": int(chunk.lines[row]), "duplicate_of": int(first[row])})
        yield chunk, first


# -- interpreting chunks, here or in child processes -------------------------------------------


def _process(
    task: tuple[Any, np.ndarray | None],
    parse: Callable[[RecordChunk], ParsedChunk] | None,
    rs: Ruleset,
    formats,
    keep_rows: KeepRows | None = None,
    decimal: str = ".",
) -> tuple[list[str], BatchSummary]:
    """One chunk (records of a wide file, parsed here; or rows of a long file) → its output texts and counts."""
    chunk, duplicate_of = task
    parsed = parse(chunk) if parse is not None else chunk
    part = BatchSummary()
    with without_cyclic_gc():
        rows = interpret_chunk(parsed, rs, part, duplicate_of, keep_rows, decimal)
        return [text_format.rows(rows) for text_format in formats], part


@contextlib.contextmanager
def without_cyclic_gc() -> Iterator[None]:
    """No cyclic garbage collection while a chunk is processed: a chunk makes hundreds of thousands of containers
    (its answers), and each collection the allocations trigger walks them all, a quarter of a storing chunk's time.
    Reference counting still frees what a chunk drops; what cycles it left are collected once it is done."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _interpreted(
    tasks: Iterator[tuple[Any, np.ndarray | None]],
    work: Callable[[Any], tuple[list[str], BatchSummary]],
    jobs: int,
    staged: Callable[[Iterator[tuple[Any, np.ndarray | None]]], Iterator[tuple[list[str], BatchSummary]]] | None = None,
) -> Iterator[tuple[list[str], BatchSummary]]:
    """(texts, counts) per chunk, in input order; child processes only when a second chunk comes. `staged` (a
    storing run's StagedKeep: _stored_in_order) takes over when there is more than one chunk and more than one job."""
    first = next(tasks, None)
    if first is None:
        return
    second = next(tasks, None) if jobs > 1 and CAN_FORK else None
    if staged is not None and second is not None:
        yield from staged(itertools.chain((first, second), tasks))
        return
    if second is None:
        yield work(first)
        del first  # memory: one chunk at a time
        for task in tasks:
            yield work(task)
        return
    yield from forked_results(itertools.chain((first, second), tasks), work, jobs)


# -- storing runs: chunks prepared in a worker process, stored here in file order -------------------

_WORKER_RULESET: Ruleset | None = None
_WORKER_PREPARE: Callable[[ParsedChunk, Interpreted, np.ndarray], Any] | None = None


def _set_worker_stage(rs: Ruleset, prepare: Callable[[ParsedChunk, Interpreted, np.ndarray], Any]) -> None:
    global _WORKER_RULESET, _WORKER_PREPARE
    _WORKER_RULESET, _WORKER_PREPARE = rs, prepare
    _end_with_parent()


def _end_with_parent() -> None:
    """Linux: have the kernel end this worker when the process (thread) that started it dies, so a job worker
    killed mid-job leaves no worker process behind (elsewhere the worker ends when its queue closes)."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _prepare_in_worker(
    parsed: ParsedChunk, duplicate_of, formats, decimal: str = "."
) -> tuple[list[str], BatchSummary, Any]:
    """Interpret a chunk, format its texts and prepare what it keeps (StagedKeep.prepare); nothing is stored."""
    assert _WORKER_RULESET is not None and _WORKER_PREPARE is not None
    prepare = _WORKER_PREPARE
    prepared: list[Any] = []

    def keep_later(parsed: ParsedChunk, interpreted: Interpreted, errors: np.ndarray) -> int:
        prepared.append(prepare(parsed, interpreted, errors))
        return 0  # counted when the job's process stores it

    texts, part = _process((parsed, duplicate_of), None, _WORKER_RULESET, formats, keep_later, decimal)
    return texts, part, prepared[0]


def _stored_in_order(
    tasks: Iterable[tuple[Any, Any]],
    parse: Callable[[RecordChunk], ParsedChunk] | None,
    rs: Ruleset,
    formats,
    keep_rows: StagedKeep,
    decimal: str = ".",
) -> Iterator[tuple[list[str], BatchSummary]]:
    """(texts, counts) per chunk, in input order, each chunk stored before it is yielded: one worker process
    interprets and prepares the next chunk while this process stores the current one (on 2 cores, the rendering
    of answers overlaps the storing). The store stage runs here, chunk after chunk, so each chunk's history
    includes the chunks before it and a job's chunk markers commit in order, as without the worker."""
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        1, mp_context=context, initializer=_set_worker_stage, initargs=(rs, keep_rows.prepare)
    ) as pool:
        pending: deque[tuple[ParsedChunk, Future]] = deque()
        for chunk, duplicate_of in tasks:  # lazily: the window bounds memory
            parsed = parse(chunk) if parse is not None else chunk  # here: the store stage needs the parsed rows
            pending.append((parsed, pool.submit(_prepare_in_worker, parsed, duplicate_of, formats, decimal)))
            if len(pending) > STORING_CHUNKS_AHEAD:
                yield _store_prepared(keep_rows, *pending.popleft())
        while pending:
            yield _store_prepared(keep_rows, *pending.popleft())


def _store_prepared(keep_rows: StagedKeep, parsed: ParsedChunk, future: Future) -> tuple[list[str], BatchSummary]:
    texts, part, prepared = future.result()
    with without_cyclic_gc():
        part.stored += keep_rows.store(parsed, prepared)
    return texts, part
