"""Records with their physical line numbers (reader.py): blank lines, quoted line breaks, bad lines.

Files are read through the same wiring as run_batch (a HashingStream after the sniffed sample, the
quote count, and a reopen for the slow path), so the fast parser and its fallback are both covered.
Line 1 is the header. Every expectation is counted off the file text by hand.
"""

from __future__ import annotations

import io

import pytest

from labservice.adapters.csv_input.dialect import SAMPLE_BYTES, sniff
from labservice.adapters.csv_input.line_fields import LineFields
from labservice.adapters.csv_input.options import BatchOptions
from labservice.adapters.csv_input.reader import RecordChunk, read_records
from labservice.batch.stream import HashingStream, rewound

TOO_MANY_2 = "more fields than the header's 2"
TOO_MANY_3 = "more fields than the header's 3"


def chunks(
    data: bytes, chunk_rows: int, numeric: frozenset[int] = frozenset(), valid_utf8: bool = False
) -> list[RecordChunk]:
    source = io.BytesIO(data)
    stream = HashingStream(source)
    sample = stream.peek_sample(SAMPLE_BYTES)
    found = sniff(sample, BatchOptions(), complete=stream.exhausted)
    if valid_utf8:
        stream.replace_invalid_utf8()
    return list(
        read_records(
            io.BufferedReader(stream, 1 << 20),
            found,
            set(numeric),
            chunk_rows,
            reopen=lambda: rewound(source, 0),
            quotes_read=lambda: stream.quotes,
            line_fields=LineFields(source, 0, found, sample).fields,
            valid_utf8=valid_utf8,
        )
    )


def bad_cells(data: bytes, chunk_rows: int = 1000) -> dict[int, list]:
    """line -> the cells a bad line showed, over all chunks; missing cells as None."""
    out: dict[int, list] = {}
    for chunk in chunks(data, chunk_rows):
        assert set(chunk.bad_cells) <= {line for line, _ in chunk.bad_lines}
        for line, cells in chunk.bad_cells.items():
            out[line] = [None if cell is None or cell != cell else cell for cell in cells]
    return out


def read(data: bytes, chunk_rows: int = 1000, numeric: frozenset[int] = frozenset()):
    """(rows as (line, cells), bad lines, blank line count) over all chunks; missing cells as None.

    Bad lines are sorted within each chunk (the output places them among the chunk's rows by line).
    """
    rows, bad, blank = [], [], 0
    for chunk in chunks(data, chunk_rows, numeric):
        assert len(chunk.frame) == len(chunk.lines)
        for line, cells in zip(chunk.lines.tolist(), chunk.frame.itertuples(index=False, name=None), strict=True):
            rows.append((line, tuple(None if cell is None or cell != cell else cell for cell in cells)))
        bad += sorted(chunk.bad_lines)
        blank += chunk.blank_lines
    return rows, bad, blank


def test_plain_file() -> None:
    assert read(b"id,PLT\n1,100\n2,200\n") == ([(2, ("1", "100")), (3, ("2", "200"))], [], 0)


def test_no_newline_at_the_end() -> None:
    assert read(b"id,PLT\n1,100\n2,200") == ([(2, ("1", "100")), (3, ("2", "200"))], [], 0)


def test_header_only() -> None:
    assert read(b"id,PLT\n") == ([], [], 0)


def test_line_numbers_across_blank_lines() -> None:
    rows, bad, blank = read(b"id,PLT\n1,100\n\n2,200\n\n\n3,300\n")
    assert [line for line, _ in rows] == [2, 4, 7]
    assert bad == []
    assert blank == 3


def test_a_row_of_empty_cells_is_blank() -> None:
    rows, _, blank = read(b"id,PLT\n,\n2,200\n")
    assert rows == [(3, ("2", "200"))]
    assert blank == 1


def test_leading_blank_lines_before_the_header() -> None:
    rows, _, _ = read(b"\n\nid,PLT\n1,100\n2,200\n")
    assert [line for line, _ in rows] == [4, 5]


def test_crlf_line_ends() -> None:
    rows, _, blank = read(b"id,PLT\r\n1,100\r\n\r\n2,200\r\n")
    assert rows == [(2, ("1", "100")), (4, ("2", "200"))]
    assert blank == 1


def test_quoted_line_breaks_shift_the_following_lines() -> None:
    rows, bad, _ = read(b'id,note,PLT\n1,"a\nb\nc",100\n2,x,200\n3,"y\n",300\n4,"p,q",400\n')
    assert rows == [
        (2, ("1", "a\nb\nc", "100")),
        (5, ("2", "x", "200")),
        (6, ("3", "y\n", "300")),
        (8, ("4", "p,q", "400")),
    ]
    assert bad == []


def test_header_spanning_two_lines() -> None:
    rows, _, _ = read(b'"id\n(lab)",PLT\n1,100\n2,200\n')
    assert [line for line, _ in rows] == [3, 4]


def test_numeric_columns_are_read_as_numbers() -> None:
    rows, _, _ = read(b"id,PLT\n1,100\n2,\n", numeric=frozenset({1}))
    assert rows == [(2, ("1", 100.0)), (3, ("2", None))]


def test_fewer_fields_than_the_header_are_missing_cells_not_a_bad_line() -> None:
    rows, bad, _ = read(b"id,PLT,WBC\n1,100\n2,200,6\n")
    assert rows == [(2, ("1", "100", None)), (3, ("2", "200", "6"))]
    assert bad == []


@pytest.mark.parametrize(
    ("data", "good", "bad_lines"),
    [
        (b"id,PLT\n1,100\n2,200,EXTRA\n3,300\n", [2, 4], [3]),
        (b"id,PLT\n1,100\n2,200,X,Y\n\n3,300\n", [2, 5], [3]),  # two extra fields
        (b"id,PLT\n1,100,EXTRA\n2,200\n", [3], [2]),  # the first data line (pandas took it as an index)
        (b"id,PLT\n1,100,X,Y\n2,200\n", [3], [2]),
        (b"id,PLT\n1,100\n2,200,EXTRA\n", [2], [3]),  # the last line
        (b"id,PLT\n1,100,X\n2,200,X,Y,Z\n3,300\n4,400,X\n", [4], [2, 3, 5]),
    ],
)
def test_lines_with_too_many_fields_are_bad_lines(data: bytes, good: list[int], bad_lines: list[int]) -> None:
    rows, bad, _ = read(data)
    assert [line for line, _ in rows] == good
    assert bad == [(line, TOO_MANY_2) for line in bad_lines]


def test_too_many_fields_after_a_quoted_line_break() -> None:
    rows, bad, blank = read(
        b'id,note,PLT\r\n1,"a\r\nb",100\r\n\r\n2,"x,y",200\r\n3,"z""q\n\nw",300,extra\r\n4,k,400\r\n'
    )
    assert rows == [(2, ("1", "a\r\nb", "100")), (5, ("2", "x,y", "200")), (9, ("4", "k", "400"))]
    assert bad == [(6, TOO_MANY_3)]
    assert blank == 1


def test_unclosed_quote_at_the_end() -> None:
    rows, bad, _ = read(b'id,note,PLT\n1,x,100\n2,y,200\n3,"never closed\n')
    assert [line for line, _ in rows] == [2, 3]
    assert len(bad) == 1 and bad[0][0] == 4
    assert "never closed" in bad[0][1]


def test_unclosed_quote_swallows_the_rest_of_the_file() -> None:
    rows, bad, _ = read(b'id,note,PLT\n1,x,100\n2,"open,200\n3,y,300\n')
    assert rows == [(2, ("1", "x", "100"))]
    assert bad == [(3, "a quoted field opened on this line is never closed; lines 3 to 4 could not be read")]


# One file with every hazard; lines counted by hand:
#  1 header | 2-3 quoted break | 4 one extra field | 5 blank | 6-7 quoted break | 8 two extra fields
#  9 good | 10-11 a quote opened on line 10 and never closed (swallows line 11)
MESSY = b'id,note,PLT\n1,"a\nb",100\n2,x,200,EXTRA\n\n3,"m\nn",300\n4,y,400,X,Y\n5,z,500\n6,"open,600\n7,w,700\n'
MESSY_ROWS = [(2, ("1", "a\nb", "100")), (6, ("3", "m\nn", "300")), (9, ("5", "z", "500"))]
MESSY_BAD = [
    (4, TOO_MANY_3),
    (8, TOO_MANY_3),
    (10, "a quoted field opened on this line is never closed; lines 10 to 11 could not be read"),
]


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 4, 1000])
def test_messy_file(chunk_rows: int) -> None:
    assert read(MESSY, chunk_rows) == (MESSY_ROWS, MESSY_BAD, 1)


FILES = [
    b"id,PLT\n1,100\n\n2,200\n\n\n3,300\n",
    b'id,note,PLT\n1,"a\nb\nc",100\n\n2,x,200\n3,"y\n",300\n4,"p,q",400\n5,,\n6,z,600',
    b"id,PLT\n1,100,X\n2,200\n3,300,X,Y\n\n4,400\n5,500,X\n",
    b'id,note,PLT\n1,x,100\n2,"y\nz",200\n\n3,w,300\n4,"open,400\n5,v,500\n',
    MESSY,
]


@pytest.mark.parametrize("data", FILES)
def test_chunk_size_does_not_change_the_result(data: bytes) -> None:
    whole = read(data, 10_000)
    for chunk_rows in range(1, 8):
        assert read(data, chunk_rows) == whole, f"chunk_rows={chunk_rows}"


@pytest.mark.parametrize("data", FILES)
@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 1000])
def test_every_line_comes_back_once_in_order(data: bytes, chunk_rows: int) -> None:
    """Rows and bad lines, each chunk's merged by line, give strictly increasing lines over the file."""
    placed: list[int] = []
    for chunk in chunks(data, chunk_rows):
        placed += sorted([*chunk.lines.tolist(), *(line for line, _ in chunk.bad_lines)])
    assert placed == sorted(set(placed))


def test_a_quoted_line_break_in_a_number_column_counts_for_the_lines_after_it() -> None:
    """Found by hypothesis: pandas 3 gives a number column holding text its string dtype, not object, and the
    line breaks inside its quoted cells were not counted, so every later line number was low."""
    rows, bad, _ = read(b'PLT,HGB\n45,"a\nb"\n50,12\n', numeric=frozenset({0, 1}))
    assert [line for line, _ in rows] == [2, 4]
    assert rows[0][1][1] == "a\nb"
    assert bad == []


def test_a_blank_line_is_blank_in_a_number_column_holding_an_integer_beyond_64_bits() -> None:
    """Found by hypothesis: pandas reads such a column as text without applying na_values, so the blank line's cell
    was '' and the line passed for a record (interpreted as a CBC with nothing in it); 'NA' was not missing."""
    huge = b"1010101010101010101010101010101010101010"
    rows, bad, blank = read(b"PLT,HGB\n45," + huge + b"\n\n50,NA\n", numeric=frozenset({0, 1}))
    assert [line for line, _ in rows] == [2, 4]
    assert rows[1][1][1] is None
    assert (bad, blank) == ([], 1)


def test_a_quote_never_closed_in_the_first_record_of_a_small_file_is_a_bad_line() -> None:
    """Found by hypothesis: pandas tokenizes the first block when the reader is made, so its ParserError came from
    read_csv() itself, outside the fallback to the csv module, and escaped run_batch."""
    rows, bad, _ = read(b'"PLT","HGB"\n"45","')
    assert rows == []
    assert [line for line, _ in bad] == [2]
    assert "never closed" in bad[0][1]


def test_a_quote_never_closed_before_more_than_128_kib_is_a_bad_line_from_there_on() -> None:
    """Found by the hostile corpus: the csv module (the slow path) raised 'field larger than field limit' on the
    quoted field that swallowed the rest of the file, a 500."""
    rows, bad, _ = read(b'PLT,HGB\n45,12\n"' + b"1,2\n" * 80_000)
    assert [line for line, _ in rows] == [2]
    assert [line for line, _ in bad] == [3]
    assert "every line after it could not be read (field larger than field limit" in bad[0][1]


# -- the cells of a line with too many fields (issue 14 item 5: its id cells are kept) ---------------------------


@pytest.mark.parametrize("chunk_rows", [1, 2, 1000])
def test_a_line_with_too_many_fields_keeps_its_cells(chunk_rows: int) -> None:
    """One field too many (pandas gives it), and two or more (pandas skips the line; it is read again), also
    after a quoted line break and in the last chunk."""
    data = b'id,PLT,HGB\nA,100,13\nB,100,13,x\nC,"1\n00",13\nD,100,13,x,y\nE,,13,x,y,z\nF,100,13\nG,100,13,x,y\n'
    rows, bad, _ = read(data, chunk_rows)
    assert [line for line, _ in rows] == [2, 4, 8]
    assert bad == [(3, TOO_MANY_3), (6, TOO_MANY_3), (7, TOO_MANY_3), (9, TOO_MANY_3)]
    assert bad_cells(data, chunk_rows) == {
        3: ["B", "100", "13"],
        6: ["D", "100", "13"],
        7: ["E", None, "13"],
        9: ["G", "100", "13"],
    }


def test_line_fields_reads_forward_and_puts_the_position_back() -> None:
    data = b"id,PLT\nA,1\nB,2,x,y\nC,3\nD,4,x,y\n"
    source = io.BytesIO(data)
    source.seek(5)
    found = sniff(data, BatchOptions(), complete=True)
    fields = LineFields(source, 0, found, data)
    assert fields.fields(3) == ["B", "2", "x", "y"]
    assert source.tell() == 5
    assert fields.fields(4) is None  # not longer than the header: not a line pandas skipped
    assert fields.fields(2) is None  # behind: it only reads forward
    assert fields.fields(5) == ["D", "4", "x", "y"]
    assert fields.fields(9) is None  # past the end


def test_line_fields_reads_nothing_in_a_file_of_carriage_returns_alone() -> None:
    """Lines ended by CR alone are not counted by line feeds: rather no id than another line's."""
    data = b"id,PLT\rA,1\rB,2,x,y\r"
    found = sniff(data, BatchOptions(), complete=True)
    assert LineFields(io.BytesIO(data), 0, found, data).fields(3) is None


@pytest.mark.parametrize("chunk_rows", [4000, 50000])
def test_invalid_utf8_replaced_by_the_stream_reads_as_the_parser_replacing_it(chunk_rows: int) -> None:
    # after the sniffed sample (so the file is taken for UTF-8): bad bytes in text and number cells, a character
    # cut by a delimiter, a line end and the end of the file
    data = (
        b"id,PLT,name\n"
        + b"S1,150,abc\n" * 30000
        + (b'S\xff2,15\xfe0,M\xfcller\nS3,\xe2\x82,x\xf0\x9f\nS4,\xc3(,"q\xe2\nr"\n\xed\xa0\x80,1,\xc3')
    )
    for numeric in (frozenset(), frozenset({1})):
        assert sniff(data[:SAMPLE_BYTES], BatchOptions(), complete=False).encoding == "utf-8-sig"
        strict = chunks(data, chunk_rows, numeric, valid_utf8=True)
        replacing = chunks(data, chunk_rows, numeric)
        assert [c.frame.to_dict() for c in strict] == [c.frame.to_dict() for c in replacing]
        assert [c.lines.tolist() for c in strict] == [c.lines.tolist() for c in replacing]
        assert [c.bad_lines for c in strict] == [c.bad_lines for c in replacing]
        assert "\ufffd" in "".join(str(v) for c in strict for v in c.frame[2].tolist())


def test_joined_texts_are_equal_exactly_when_all_the_cells_are() -> None:
    pyarrow = pytest.importorskip("pyarrow")
    from labservice.adapters.csv_input.reader import joined_texts

    first = pyarrow.array(["a", "a", "a\x1f1\x1fb", None, None, "a", "1"])
    second = pyarrow.array(["b", "b", None, None, "c", None, "\x1fx"])
    keys = joined_texts([first, second]).tolist()
    assert keys[0] == keys[1]  # the same cells
    assert len(set(keys[:1] + keys[2:])) == 6  # any other cells (a separator inside a cell too) differ
    assert keys[3] is None  # no cell given: no key
    assert keys[5] == joined_texts([pyarrow.array(["a"]), pyarrow.array([""])]).tolist()[0]  # missing reads as ""


def test_id_keys_are_alike_for_a_chunk_as_read_and_once_its_frame_is_made() -> None:
    pytest.importorskip("pyarrow")
    data = b"id,PLT,name\n" + b"".join(b"S%d,%d,N%d\n" % (i % 7, 100 + i, i % 3) for i in range(40)) + b",5,\n"
    read = chunks(data, 1000)[0]
    keys = read.id_keys([0, 2])
    made = chunks(data, 1000)[0]
    made.frame  # noqa: B018 (the frame made: the keys come from its object cells)
    assert len(keys) == 1 and keys[0].tolist() == made.id_keys([0, 2])[0].tolist()
    assert keys[0][-1] is None and keys[0][0] == keys[0][21]  # S0,N0 again on line 23
