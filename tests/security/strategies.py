"""Hypothesis strategies for hostile-but-plausible inputs: CSV files and HL7 v2 messages (issue 6, fuzzing).

Both start from what real senders produce (the header aliases the CSV reader knows, ORU^R01 structure
with CBC LOINC and local codes, known unit spellings) and then garble it the way senders do: another
delimiter, quote or line ending, another encoding or a BOM, garbage headers and cells, other encoding
characters, random segments and fields, overlong fields, bytes that are not text. The generated file
keeps a record of what it holds (how many data records, which lines) so the properties can check that
every row is accounted for.

Used by tests/batch/test_rows_accounted_for.py, tests/services/test_hl7v2_receive_generated_messages.py,
tests/security/test_fuzz_inputs.py and, for the HL7 v2 request bodies, .ci/fuzz_checks.py (schemathesis).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from hypothesis import strategies as st

from labservice.adapters.csv_input.cells import MISSING_TEXTS
from labservice.adapters.csv_input.headers import _ALIASES
from labservice.core.ruleset import default_ruleset

RS = default_ruleset()

# --- CSV --------------------------------------------------------------------------------------------------

ANALYTE_FIELDS = (
    "platelets",
    "wbc",
    "neutrophils",
    "neutrophils_percent",
    "lymphocytes",
    "hemoglobin",
    "hematocrit",
    "rbc",
    "mcv",
    "mch",
    "mchc",
    "rdw",
    "reticulocytes",
    "reticulocytes_percent",
)
CONTEXT_FIELDS = ("sex", "age_years", "birth_date", "pregnant", "fever", "platelet_clumps", "duffy_null")
ID_FIELDS = ("patient_id", "sample_id", "collected_at")
HEADER_UNITS = ("K/uL", "10^9/L", "g/L", "g/dL", "mmol/L", "%", "fL", "pg", "10*12/L", "/uL", "bogus", "")
#: Delimiters the reader detects, and one it does not.
DELIMITERS = (",", ";", "\t", "|", ":")
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16")
LINE_ENDINGS = ("\n", "\r\n", "\r")

NUMBER_CELLS = st.one_of(
    st.floats(min_value=0, max_value=1000, allow_nan=False).map(lambda v: f"{v:g}"),
    st.integers(min_value=-10, max_value=10**6).map(str),
    st.sampled_from(
        [
            "1e309",
            "-1e309",
            "1e-400",
            "NaN",
            "nan",
            "inf",
            "-Infinity",
            "0x1A",
            "1_000",
            "١٢٣",
            "10" * 40,
            "4,5",
            "4.5.6",
            "--5",
            "+7",
            "<5",
            ">1000",
            "< 20",
            "<=3",
            "≥2",
            "~4",
        ]
    ),
)
TEXT_CELLS = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "M",
            "F",
            "male",
            "female",
            "0",
            "1",
            "X",
            "yes",
            "no",
            "true",
            "2026-11-20",
            "20.11.2026 08:30",
            "01/02/2026",
            "2026-13-45T99:99",
            "UNABLE TO REPORT",
            "clotted",
            "=1+1",
            "@SUM(A1)",
            "+HYPERLINK(x)",
            "-cmd",
            "\tTAB",
            "\u202e",
            "😀",
            "ü",
            "𝟘",
            '"',
            "'",
            "a\nb",
            'say "hi"',
            "x" * 300,
        ]
    ),
    st.text(max_size=12),
)
CELLS = st.one_of(NUMBER_CELLS, TEXT_CELLS)
#: A NUL byte in the first 4 KiB makes the reader refuse the file as binary (dialect.py): only in garbled bytes.


def _header_names(field: str) -> list[str]:
    return [field, *_ALIASES.get(field, ())]


@st.composite
def header_cell(draw: st.DrawFn, field: str | None = None) -> str:
    """A header naming `field` (any alias, any case, maybe with a unit), or garbage when field is None."""
    if field is None:
        return draw(
            st.one_of(
                st.text(min_size=0, max_size=15),
                st.sampled_from(["", " ", "Unnamed: 3", "PLT PLT", "?", "#", "Comment", "Notes"]),
            )
        )
    name = draw(st.sampled_from(_header_names(field)))
    name = draw(st.sampled_from([name, name.upper(), name.title(), name.replace(" ", "_"), f" {name} "]))
    if field in ANALYTE_FIELDS and draw(st.booleans()):
        # Mostly the analyte's own unit; sometimes another (an unknown unit refuses the whole file).
        unit = draw(st.sampled_from([RS.analytes[field].canonical_unit] * 6 + list(HEADER_UNITS)))
        name = draw(st.sampled_from([f"{name} ({unit})", f"{name} [{unit}]", f"{name}, {unit}"]))
    return name


@dataclass
class CsvFile:
    """A generated file and what it holds: `records` data records after the header, `blank` blank lines."""

    data: bytes
    delimiter: str
    encoding: str
    header: list[str]
    records: int = 0
    blank: int = 0
    record_lines: list[int] = field(default_factory=list)  # physical line of each record (header = 1)


@st.composite
def csv_files(
    draw: st.DrawFn,
    *,
    max_rows: int = 25,
    garbage: bool = True,
    encodings: tuple[str, ...] = ENCODINGS,
    delimiters: tuple[str, ...] = DELIMITERS,
) -> CsvFile:
    """A wide CSV file: one or more analyte columns under any alias, id and context columns, garbage columns
    (with `garbage`), written with a random delimiter, quoting, line ending and encoding. Every record
    is written by csv.writer, so a reader honouring the dialect sees exactly `records` records."""
    fields = draw(st.lists(st.sampled_from(ANALYTE_FIELDS), min_size=1, max_size=5, unique=True))
    fields += draw(st.lists(st.sampled_from(ID_FIELDS + CONTEXT_FIELDS), max_size=4, unique=True))
    columns: list[str | None] = list(fields)
    if garbage:
        columns += [None] * draw(st.integers(min_value=0, max_value=2))
    columns = draw(st.permutations(columns))
    delimiter = draw(st.sampled_from(delimiters))
    newline = draw(st.sampled_from(LINE_ENDINGS))
    # A header cell may hold a quoted line break (the header then spans lines), but never a bare CR, nor any
    # break in a file whose lines end in CR alone (csv.writer does not quote LF when the terminator is CR).
    header = [draw(header_cell(column)).replace("\r", "") for column in columns]
    if newline == "\r":
        header = [cell.replace("\n", "") for cell in header]
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    encoding = draw(st.sampled_from(encodings))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline, quoting=quoting)
    writer.writerow(header)
    generated = CsvFile(b"", delimiter, encoding, header)
    line = 2 + sum(cell.count("\n") for cell in header)
    for _ in range(draw(st.integers(min_value=0, max_value=max_rows))):
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            out.write(newline)
            generated.blank += 1
            line += 1
            continue
        row = [draw(CELLS if garbage else NUMBER_CELLS) for _ in columns]
        if all(cell.strip() in MISSING_TEXTS for cell in row):  # an all-missing record reads as a blank line
            row[0] = "0"
        # A quoted line break inside a cell makes the record span lines (counted below); a bare CR inside a
        # cell, or any break in a file whose lines end in CR alone, would be a line ending of its own.
        row = [cell.replace("\r", "") for cell in row]
        if newline == "\r":
            row = [cell.replace("\n", "") for cell in row]
        writer.writerow(row)
        generated.records += 1
        generated.record_lines.append(line)
        line += 1 + sum(cell.count("\n") for cell in row)
    text = out.getvalue()
    try:
        generated.data = text.encode(encoding)
    except UnicodeEncodeError:  # cp1252 / latin-1 cannot hold every generated character: keep them UTF-8
        generated.encoding = "utf-8"
        generated.data = text.encode("utf-8")
    return generated


@st.composite
def garbled_csv_bytes(draw: st.DrawFn) -> bytes:
    """A generated file with bytes replaced, cut short, framed by junk, or random bytes altogether."""
    kind = draw(st.sampled_from(["edited", "edited", "truncated", "binary", "gzip-magic", "one-line"]))
    if kind == "binary":
        return draw(st.binary(max_size=600))
    if kind == "gzip-magic":
        return b"\x1f\x8b\x08\x00" + draw(st.binary(max_size=200))
    base = draw(csv_files()).data
    if kind == "truncated":
        return base[: draw(st.integers(min_value=0, max_value=len(base)))]
    if kind == "one-line":  # many columns on one line, no newline at all
        return b",".join(b"PLT" for _ in range(draw(st.integers(min_value=1, max_value=3000))))
    body = bytearray(base)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        at = draw(st.integers(min_value=0, max_value=len(body)))
        body[at : at + draw(st.integers(min_value=0, max_value=3))] = draw(st.binary(min_size=0, max_size=4))
    return bytes(body)


# --- HL7 v2 -----------------------------------------------------------------------------------------------

CBC_LOINC = sorted(code for analyte in RS.analytes.values() for code in analyte.loinc)
LOCAL_CODES = ("PLTC", "PLT", "WBC", "HGB", "HCT", "RBC", "MCV", "MCH", "MCHC", "RDW", "NEUT#", "LYMPH#")
HL7_UNITS = (
    "10*3/uL",
    "10*9/L",
    "K/uL",
    "k/uL",
    "giga.l-1",
    "tera.l-1",
    "10*12/L",
    "g/dL",
    "g/L",
    "g/l-1",
    "mmol/L",
    "%",
    "fL",
    "pg",
    "{cells}/uL",
    "/uL",
    "g/mL",
    "",
    "x",
    "10^9/L",
)
STATUSES = ("F", "C", "U", "A", "B", "V", "P", "R", "S", "I", "O", "N", "X", "D", "W", "Z", "", "FF")
VALUE_TYPES = ("NM", "SN", "ST", "TX", "CE", "", "ZZ")
TIMES = (
    "20261120083000+0000",
    "20261120083000",
    "202611200830",
    "20261120",
    "2026",
    "20261340999999",
    "20261120083000+2500",
    "",
    "yesterday",
    "19000101",
)
MESSAGE_TYPES = ("ORU^R01", "ORU^R01^ORU_R01", "ORF^R04", "ADT^A01", "ACK", "", "ORU", "^R01", "ORU^R01^X^Y")
VERSIONS = ("2.3", "2.3.1", "2.5", "2.5.1", "2.9", "", "3.0", "x")
#: Characters HL7 v2 senders use as separators, and some they should not.
SEPARATOR_CHARS = "|^~\\&#$*%!@:;"


@dataclass
class Hl7Message:
    """A generated message: the bytes, its segment and field separators and how many OBX it holds."""

    data: bytes
    obx: int
    field_sep: str
    segment_sep: str


def _value(draw: st.DrawFn) -> str:
    return draw(
        st.one_of(
            st.floats(min_value=0, max_value=600, allow_nan=False).map(lambda v: f"{v:g}"),
            st.sampled_from(
                [
                    "45",
                    "2.1",
                    "0",
                    "-5",
                    "1e309",
                    "NaN",
                    "Infinity",
                    "<5",
                    ">1000",
                    "^45",
                    "<^5",
                    "45^",
                    "4,5",
                    "",
                    "abc",
                    "1" * 400,
                    "\\F\\",
                    "\x00",
                ]
            ),
        )
    )


@st.composite
def clean_obx(draw: st.DrawFn, component: str) -> list[str]:
    """OBX-2..OBX-14 of a result a laboratory would send: a CBC LOINC code with its canonical unit and a
    value around the typical one, any result status; or a result that is not a CBC count (glucose)."""
    if draw(st.integers(min_value=0, max_value=7)) == 0:
        return [
            "NM",
            component.join(["2345-7", "Glucose", "LN"]),
            "",
            "5.4",
            "mmol/L",
            "3.9-6.1",
            "N",
            "",
            "",
            draw(st.sampled_from(STATUSES[:8])),
            "",
            "",
            "",
        ]
    code = draw(st.sampled_from(CBC_LOINC))
    analyte = RS.analytes[RS.analyte_by_loinc()[code]]
    value = analyte.typical * draw(st.sampled_from([0.02, 0.2, 0.6, 1.0, 1.4, 3.0]))
    return [
        draw(st.sampled_from(["NM", "NM", "SN", "ST"])),
        component.join([code, analyte.label, "LN"]),
        "",
        f"{value:.4g}" if draw(st.booleans()) else draw(st.sampled_from(["", "<5", f"{value:.4g}"])),
        analyte.canonical_unit,
        "",
        "",
        "",
        "",
        draw(st.sampled_from(STATUSES[:15])),
        "",
        "",
        draw(st.sampled_from(TIMES[:3])),
    ]


@st.composite
def hl7_messages(draw: st.DrawFn, *, max_groups: int = 3, max_obx: int = 8, garbage: bool = True) -> Hl7Message:
    """An ORU^R01-like message: MSH (random encoding characters, type, version, charset), PID, one or more
    OBR groups of OBX with CBC codes (LOINC or local), values, units, ranges and statuses drawn from what
    senders send and what they garble, random extra segments, sometimes an overlong field. Without
    `garbage` the message is one a laboratory could send (ORU^R01, valid results, no garbled fields): most
    are then answered rather than refused, so the answers themselves get checked."""
    if not garbage:
        return draw(_clean_message(max_groups, max_obx))
    field_sep = draw(st.sampled_from("|||#!$"))
    others = [c for c in SEPARATOR_CHARS if c != field_sep]
    encoding_chars = "".join(draw(st.permutations(others))[:4]) if draw(st.booleans()) else "^~\\&"
    encoding_chars = encoding_chars.replace(field_sep, "")
    component = encoding_chars[0] if encoding_chars else "^"
    segment_sep = draw(st.sampled_from(["\r", "\r", "\n", "\r\n"]))
    charset = draw(st.sampled_from(["", "", "UNICODE UTF-8", "8859/1", "ASCII", "bogus"]))

    def seg(*fields: str) -> str:
        return field_sep.join(fields)

    msh = seg(
        "MSH",
        encoding_chars,
        "LIS",
        "LAB",
        "labservice",
        "HOSP",
        draw(st.sampled_from(TIMES)),
        "",
        draw(st.sampled_from(MESSAGE_TYPES)).replace("^", component),
        draw(st.text(max_size=20)),
        draw(st.sampled_from(["P", "T", "D", ""])),
        draw(st.sampled_from(VERSIONS)),
        *([""] * 5),
        charset,
    )
    pid = seg(
        "PID",
        "1",
        "",
        draw(st.sampled_from(["MRN-0042^^^HOSP^MR", "", "X" * 300, "P1"])).replace("^", component),
        "",
        "DOE^JANE".replace("^", component),
        "",
        draw(st.sampled_from(["19920402", "", "2030", "abc"])),
        draw(st.sampled_from(["F", "M", "U", "", "?"])),
    )
    segments = [msh, pid]
    obx_total = 0
    for group in range(draw(st.integers(min_value=0, max_value=max_groups))):
        segments.append(
            seg(
                "OBR",
                str(group + 1),
                "ORD",
                "FIL",
                component.join(["58410-2", "CBC", "LN"]),
                "",
                "",
                draw(st.sampled_from(TIMES)),
            )
        )
        for index in range(draw(st.integers(min_value=0, max_value=max_obx))):
            if draw(st.booleans()):
                code = component.join([draw(st.sampled_from(CBC_LOINC)), "", "LN"])
            else:
                code = component.join(
                    [
                        draw(st.sampled_from((*LOCAL_CODES, "GLU", "", "777-3"))),
                        "",
                        draw(st.sampled_from(["L", "99LOC", "LN", ""])),
                    ]
                )
            low_high = draw(st.sampled_from(["150-410", "4.0-11.0", "<5", "4.3 to 6.2", "", "-", "abc", "10-1"]))
            segments.append(
                seg(
                    "OBX",
                    str(index + 1),
                    draw(st.sampled_from(VALUE_TYPES)),
                    code,
                    "",
                    _value(draw).replace("^", component),
                    draw(st.sampled_from(HL7_UNITS)),
                    low_high,
                    draw(st.sampled_from(["L", "H", "N", ""])),
                    "",
                    "",
                    draw(st.sampled_from(STATUSES)),
                    "",
                    "",
                    draw(st.sampled_from(TIMES)),
                )
            )
            obx_total += 1
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        extra = seg(
            draw(st.sampled_from(["NTE", "SPM", "ZXX", "OBX", "MSH", "PV1", "ORC", "X", ""])),
            *draw(st.lists(st.text(max_size=10), max_size=5)),
        )
        segments.insert(draw(st.integers(min_value=1, max_value=len(segments))), extra)
        obx_total += extra.startswith("OBX")
    if draw(st.integers(min_value=0, max_value=9)) == 0:  # an overlong field somewhere
        at = draw(st.integers(min_value=1, max_value=len(segments) - 1))
        segments[at] += field_sep + "9" * draw(st.sampled_from([70_000, 300_000]))
    text = segment_sep.join(segments) + draw(st.sampled_from([segment_sep, "", segment_sep * 2]))
    encoding = "latin-1" if charset == "8859/1" else "utf-8"
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        data = draw(st.sampled_from([b"\xef\xbb\xbf", b"\x0b", b""])) + data + draw(st.sampled_from([b"\x1c\r", b""]))
    return Hl7Message(data, obx_total, field_sep, segment_sep)


@st.composite
def _clean_message(draw: st.DrawFn, max_groups: int, max_obx: int) -> Hl7Message:
    field_sep = draw(st.sampled_from("|#!"))
    encoding_chars = draw(st.sampled_from(["^~\\&", "^~\\&", "$~\\&", "^~\\&#"]))
    component = encoding_chars[0]
    segment_sep = draw(st.sampled_from(["\r", "\n", "\r\n"]))

    def seg(*fields: str) -> str:
        return field_sep.join(fields)

    segments = [
        seg(
            "MSH",
            encoding_chars,
            "LIS",
            "LAB",
            "labservice",
            "HOSP",
            TIMES[0],
            "",
            component.join(["ORU", "R01"]),
            "MSG1",
            "P",
            draw(st.sampled_from(VERSIONS[:4])),
        ),
        seg(
            "PID",
            "1",
            "",
            component.join(["MRN-0042", "", "", "HOSP", "MR"]),
            "",
            "",
            "",
            draw(st.sampled_from(["19920402", ""])),
            draw(st.sampled_from(["F", "M", "U", ""])),
        ),
    ]
    obx_total = 0
    for group in range(draw(st.integers(min_value=1, max_value=max_groups))):
        segments.append(
            seg(
                "OBR",
                str(group + 1),
                "ORD",
                "FIL",
                component.join(["58410-2", "CBC", "LN"]),
                "",
                "",
                draw(st.sampled_from(TIMES[:4])),
            )
        )
        for index in range(draw(st.integers(min_value=1, max_value=max_obx))):
            segments.append(seg("OBX", str(index + 1), *draw(clean_obx(component))))
            obx_total += 1
        if draw(st.booleans()):
            segments.append(seg("NTE", "1", "", "a comment"))
    return Hl7Message(segment_sep.join(segments).encode(), obx_total, field_sep, segment_sep)


@st.composite
def garbled_hl7_bytes(draw: st.DrawFn) -> bytes:
    """A generated message with a few bytes replaced or inserted (separators, NULs, invalid UTF-8)."""
    body = bytearray(draw(hl7_messages()).data)
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        at = draw(st.integers(min_value=0, max_value=len(body)))
        body[at : at + draw(st.integers(min_value=0, max_value=2))] = draw(
            st.one_of(st.binary(max_size=3), st.sampled_from([b"|", b"^", b"\r", b"\x00", b"\xff\xfe", b"MSH|"]))
        )
    return bytes(body)


def msa_code(ack: str) -> str:
    """MSA-1 of an ACK, read by hand: the ACK keeps the sender's encoding characters, and python-hl7 cannot
    parse a message whose MSH-2 has fewer than four (`MSH|\\&|...`), which a sender may well send."""
    separator = ack[3]
    [msa] = [segment for segment in ack.split("\r") if segment.startswith("MSA" + separator)]
    return msa.split(separator)[1]
