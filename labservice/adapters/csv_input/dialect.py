"""Encoding, delimiter and decimal mark of a CSV file, read off its first bytes.

UTF-8 (with or without a BOM) is expected; a file whose first block is not valid UTF-8 is read as
Windows-1252 (the usual single-byte export of older systems, where `x10³/µL` is the bytes B3 and B5) and the
summary says so. A UTF-16 or UTF-32 file (Excel's "Unicode text": a byte order mark, or a NUL beside every
ASCII character) is refused with what to do: save it as CSV UTF-8; other bytes with NULs are refused as binary.
The delimiter is the candidate that splits the header record (up to the first line end outside quotes)
into the most fields; the decimal mark is "," when the delimiter is not "," and the sampled numbers
are written with commas.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from dataclasses import dataclass

from labservice.adapters.csv_input.options import BatchFileError, BatchOptions

SAMPLE_BYTES = 256 * 1024
#: Most columns a header may have: wide LIS exports have tens to hundreds; a line of a million empty fields
#: is not a table of CBCs, and every column costs the parser time and memory.
MAX_COLUMNS = 10_000
DELIMITERS = (",", ";", "\t", "|")
_COMMA_NUMBER = re.compile(r"^\s*-?\d+,\d+\s*$")
_DOT_NUMBER = re.compile(r"^\s*-?\d+\.\d+\s*$")
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Dialect:
    encoding: str  # Python codec name given to the reader ("utf-8-sig" also drops a BOM)
    delimiter: str
    decimal: str
    header: list[str]
    header_lines: int  # physical lines up to the end of the header (a quoted header may span lines)
    leading_blank_lines: int
    #: The first record after the header has two or more fields more than the header (as far as the sample
    #: shows it). pandas' C parser makes a column of every field of the first record it reads: a first line
    #: of a megabyte of commas cost it 30 s. The reader then reads only the header's
    #: columns (see reader.py).
    wide_first_record: bool = False
    #: Said in the summary when the file was not read as UTF-8 (which encoding, and why).
    encoding_note: str | None = None


#: What a person does with a file that is not 8-bit text: the spreadsheet's own words.
SAVE_AS_UTF8 = "save it as CSV UTF-8 (in Excel: File > Save As > CSV UTF-8 (Comma delimited))"
#: Byte order marks of the wide Unicode encodings (UTF-32 first: its little-endian mark begins with UTF-16's).
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
#: Bytes of the head looked at for NULs.
NUL_WINDOW = 4096


def wide_unicode(head: bytes) -> str | None:
    """ "UTF-16" or "UTF-32" when the bytes are that encoding's text (a byte order mark, or, without one, NULs at
    every other byte as ASCII text in UTF-16 has them), else None."""
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return name
    window = head[:NUL_WINDOW]
    pairs = len(window) // 2
    if pairs < 2:
        return None
    even, odd = window[0 : 2 * pairs : 2].count(0), window[1 : 2 * pairs : 2].count(0)
    many, few = max(even, odd), min(even, odd)
    return "UTF-16" if many >= 0.7 * pairs and few <= 0.1 * pairs else None


def refuse_not_text(head: bytes) -> None:
    """Raise BatchFileError for a UTF-16 / UTF-32 file or one with NUL bytes (binary), saying what to do."""
    wide = wide_unicode(head)
    if wide is not None:
        raise BatchFileError(
            f'the file is {wide} text (a spreadsheet\'s "Unicode text"), which is not read here: {SAVE_AS_UTF8}'
        )
    if head.startswith(b"PK\x03\x04"):
        raise BatchFileError(f"the file is an Excel workbook or another zip archive, not CSV text: {SAVE_AS_UTF8}")
    if b"\x00" in head[:NUL_WINDOW]:
        raise BatchFileError(f"the file is binary (it holds NUL bytes), not CSV text: {SAVE_AS_UTF8}")


def _decode(sample: bytes, encoding: str | None, complete: bool) -> tuple[str, str, str | None]:
    """(the sample's text, the codec, a note for the summary when the file was not read as UTF-8)."""
    if encoding:
        try:
            return sample.decode(encoding, errors="replace"), encoding, None
        except LookupError:
            raise BatchFileError(f"unknown encoding {encoding!r}") from None
    refuse_not_text(sample)
    cut = sample if complete else sample[: sample.rfind(b"\n") + 1] or sample
    try:
        return cut.decode("utf-8-sig"), "utf-8-sig", None
    except UnicodeDecodeError as error:
        not_utf8 = error.start
    try:
        text = cut.decode("cp1252")
    except UnicodeDecodeError as error:  # one of the five bytes Windows-1252 leaves undefined
        byte = cut[error.start]
        return (
            cut.decode("cp1252", errors="replace"),
            "cp1252",
            f"the file is neither UTF-8 nor Windows-1252 (byte 0x{byte:02X} at offset {error.start} is in neither): "
            f"it was read as Windows-1252 with such bytes as U+FFFD; state its encoding in the mapping "
            f'("encoding") or {SAVE_AS_UTF8}',
        )
    return (
        text,
        "cp1252",
        f"the file is not UTF-8 (byte 0x{cut[not_utf8]:02X} at offset {not_utf8}): it was read as Windows-1252; "
        f'if its text looks wrong, state its encoding in the mapping ("encoding") or {SAVE_AS_UTF8}',
    )


#: A CSV line as the csv module and pandas see it: ended by CRLF, LF or CR alone (or the end of the text).
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def sniff(sample: bytes, options: BatchOptions, complete: bool) -> Dialect:
    """Read the dialect off the first bytes of the file (`complete`: the sample is the whole file)."""
    text, encoding, encoding_note = _decode(sample, options.encoding, complete)
    lines = _LINES.findall(text)  # not str.splitlines: U+0085, U+2028, FF... are not CSV line ends
    leading = 0
    while leading < len(lines) and not lines[leading].strip(" \t\r\n"):
        leading += 1
    if leading == len(lines):
        raise BatchFileError("the file is empty: no header line")
    text = "".join(lines[leading:])
    if not complete and not _LINE_END.search(text):
        raise BatchFileError(f"the header line is longer than {SAMPLE_BYTES} bytes")
    delimiter = options.delimiter or _pick_delimiter(text)
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)  # lines may end in CR alone
    try:
        raw_header = next(rows, [])
    except csv.Error as error:  # e.g. one field larger than the csv module's limit (128 KiB)
        raise BatchFileError(f"the header line cannot be read as CSV: {error}") from None
    if not complete and _open_at_end(text, delimiter, rows.line_num, len(lines) - leading):
        raise BatchFileError(f"the header line is longer than {SAMPLE_BYTES} bytes")
    header_lines = leading + 1 + sum(h.count("\n") for h in raw_header)  # quoted line breaks too
    header = [h.strip() for h in raw_header]
    if not any(header):
        raise BatchFileError("the header line is empty")
    if len(header) > MAX_COLUMNS:
        raise BatchFileError(f"the header has {len(header)} columns; at most {MAX_COLUMNS} are read")
    try:
        first = next(rows, None)
    except csv.Error:  # a field beyond the csv module's limit: the reader reports the line
        first = None
    if first is None and not complete:  # the first record runs past the sample: count the fields it shows
        first = _partial_first_record(sample, encoding, leading, delimiter)
    wide = first is not None and len(first) > len(header) + 1
    records = itertools.chain([first] if first is not None else [], rows)
    decimal = options.decimal or _pick_decimal(records, delimiter)
    return Dialect(encoding, delimiter, decimal, header, header_lines, leading, wide, encoding_note)


def _partial_first_record(sample: bytes, encoding: str, leading: int, delimiter: str) -> list[str] | None:
    """The fields of the first record after the header that the whole sample shows (its end may cut a
    character or a field: only the count matters), or None."""
    lines = _LINES.findall(sample.decode(encoding, errors="replace"))[leading:]
    rows = csv.reader(io.StringIO("".join(lines), newline=""), delimiter=delimiter)
    try:
        next(rows, None)
        return next(rows, None)
    except csv.Error:
        return None


def _open_at_end(text: str, delimiter: str, header_lines: int, text_lines: int) -> bool:
    """Whether the header record (read over `header_lines` lines) is still inside a quoted field where the
    sample ends: the csv module then returns what it has, a header cut short. Only a header that took every
    line of the sample can be; reading it again with two more line ends shows whether they join it."""
    if header_lines < text_lines:
        return False
    probe = csv.reader(io.StringIO(text + "\n\n", newline=""), delimiter=delimiter)
    try:
        next(probe, None)
    except csv.Error:
        return True
    return probe.line_num > header_lines


def _pick_delimiter(text: str) -> str:
    """The candidate that splits the header into the most fields (a comma on a tie). The header is the first
    CSV record as that candidate reads it, up to the first line end outside quotes: a quoted cell may hold a
    line break, and the quotes that count depend on the delimiter (a quote opens a field only at its start).
    Each candidate reads one record of the sample: linear in the sample, whatever the quotes."""
    best, best_fields = ",", 1
    for candidate in DELIMITERS:
        try:
            fields = len(next(csv.reader(io.StringIO(text, newline=""), delimiter=candidate), []))
        except csv.Error:  # a field beyond the csv module's limit: this candidate does not split the line
            continue
        if fields > best_fields:
            best, best_fields = candidate, fields
    return best


def _pick_decimal(rows, delimiter: str) -> str:
    if delimiter == ",":
        return "."
    commas = dots = 0
    try:
        for count, row in enumerate(rows):
            if count >= 200:
                break
            for cell in row:
                if _COMMA_NUMBER.match(cell):
                    commas += 1
                elif _DOT_NUMBER.match(cell):
                    dots += 1
    except csv.Error:  # a line the csv module cannot read (the reader reports it): decide on the lines before
        pass
    return "," if commas > dots else "."
