"""Run a CSV file through the engine chunk by chunk: read → parse → interpret → write, memory bounded.

`run_batch` is the one entry point the command line and the HTTP upload share, so both give the
same output for the same file. Reading and the duplicate check run in order in this process; with
`jobs` > 1, parsing (of a wide file), interpreting and formatting each chunk run in a child process
forked for it (labservice.batch.forked: the chunk is not pickled), at most `jobs` at once while this
process reads the next chunk, and the texts are written back in input order.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterable, Iterator
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
from labservice.batch.chunk import DERIVABLE, FIRST_ERRORS, KeepRows, interpret_chunk
from labservice.batch.duplicates import DuplicateCheck
from labservice.batch.forked import CAN_FORK, forked_results
from labservice.batch.output import CsvFormat, JsonFormat, OutputLayout, Sink
from labservice.batch.output_dialect import OutputDialect, begins_with_bom
from labservice.batch.stream import HashingStream, rewound, seekable_source
from labservice.batch.summary import DUPLICATE_EXAMPLES, BatchSummary
from labservice.core.ruleset import Ruleset, default_ruleset
from labservice.core.table import ANALYTES

#: Input fields the output's `film` column describes (the film itself; the PLASMIC context is in the answer).
FILM_OUTPUT_FIELDS = ("schistocytes", "schistocytes_percent", "blasts_seen", "platelet_count_confirmed")


def output_analytes(analytes: list[str]) -> list[str]:
    """The analytes with output columns: those in the file plus those the engine derives from them."""
    present = set(analytes)
    for target, needs in DERIVABLE.items():
        if all(n in present for n in needs):
            present.add(target)
    return [a for a in ANALYTES if a in present]


def check_readable(source: IO[bytes], options: BatchOptions, ruleset: Ruleset | None = None) -> None:
    """Raise BatchFileError (or MappingError) now when the file cannot be read as CBCs at all, as run_batch would at
    its start: its encoding, delimiter and header (the first block only; the stream is rewound)."""
    check_options(options)
    rs = ruleset or default_ruleset()
    source.seek(0)
    stream = HashingStream(source)
    dialect = sniff(stream.peek_sample(SAMPLE_BYTES), options, complete=stream.exhausted)
    plan_columns(dialect.header, options, rs)
    source.seek(0)


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
    process, so it implies one job. `on_chunk` is called after every chunk with the summary so far and the bytes
    read (a batch job reports its progress with it).
    """
    if keep_rows is not None:
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
    numeric = numeric_columns(plan) if plan.shape == "wide" else {plan.fields["value"]}
    records = read_records(
        io.BufferedReader(stream, 1 << 20),
        dialect,
        numeric,
        options.chunk_rows,
        reopen=lambda: rewound(source, start),
        quotes_read=lambda: stream.quotes,
        line_fields=LineFields(source, start, dialect, sample).fields,
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
    shown = output_analytes(analytes)
    units = {analyte: rs.analytes[analyte].canonical_unit for analyte in shown}
    layout = OutputLayout([dialect.header[i] for i in plan.id_columns], shown, film, units)
    summary.output_columns = layout.columns()
    written = OutputDialect(dialect.delimiter, dialect.decimal, bom or excel)
    outputs = [
        (handle, kind(layout, written)) for handle, kind in ((csv_out, CsvFormat), (json_out, JsonFormat)) if handle
    ]
    sinks = [Sink(handle, text_format) for handle, text_format in outputs]
    formats = [text_format for _, text_format in outputs]
    work = partial(_process, parse=parse, rs=rs, formats=formats, keep_rows=keep_rows, decimal=dialect.decimal)
    for texts, part in _interpreted(tasks, work, jobs):
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
        ids = [chunk.cells(i) for i in plan.id_columns]  # as parse_wide_chunk reads them; the frame is made there
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
    rows = interpret_chunk(parsed, rs, part, duplicate_of, keep_rows, decimal)
    return [text_format.rows(rows) for text_format in formats], part


def _interpreted(
    tasks: Iterator[tuple[Any, np.ndarray | None]], work: Callable[[Any], tuple[list[str], BatchSummary]], jobs: int
) -> Iterator[tuple[list[str], BatchSummary]]:
    """(texts, counts) per chunk, in input order; child processes only when a second chunk comes."""
    first = next(tasks, None)
    if first is None:
        return
    second = next(tasks, None) if jobs > 1 and CAN_FORK else None
    if second is None:
        yield work(first)
        del first  # memory: one chunk at a time
        for task in tasks:
            yield work(task)
        return
    yield from forked_results(itertools.chain((first, second), tasks), work, jobs)
