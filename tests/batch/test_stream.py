"""The input stream of a batch (stream.py): hashed and counted as read, sample replayed, UTF-8 checked."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from labservice.batch.stream import HashingStream, rewound, seekable_source

DATA = ("Sample ID,PLT,Comment\n" + "".join(f'S{i},{100 + i},"note ""{i}"", é"\n' for i in range(200))).encode()


def read_all(stream: HashingStream, size: int) -> bytes:
    out = bytearray()
    while True:
        buffer = bytearray(size)
        count = stream.readinto(buffer)
        if not count:
            return bytes(out)
        out += buffer[:count]


@pytest.mark.parametrize("sample", [0, 1, 7, 100, len(DATA), len(DATA) + 10])
@pytest.mark.parametrize("size", [1, 3, 64, 4096, 1 << 20])
def test_hash_and_count_cover_the_whole_file_whatever_the_read_sizes(sample: int, size: int) -> None:
    stream = HashingStream(io.BytesIO(DATA))
    assert stream.peek_sample(sample) == DATA[:sample]
    assert read_all(stream, size) == DATA  # the sample is replayed, then the rest, each byte once
    assert stream.sha256.hexdigest() == hashlib.sha256(DATA).hexdigest()
    assert stream.bytes_read == len(DATA)
    assert stream.quotes == DATA.count(b'"')


@pytest.mark.parametrize("size", [1, 5, 8192])
def test_through_a_buffered_reader_as_pandas_reads_it(size: int) -> None:
    stream = HashingStream(io.BytesIO(DATA))
    stream.peek_sample(50)
    assert io.BufferedReader(stream, size).read() == DATA
    assert stream.sha256.hexdigest() == hashlib.sha256(DATA).hexdigest()


@pytest.mark.parametrize(("sample", "exhausted"), [(10, False), (len(DATA) - 1, False), (len(DATA) + 1, True)])
def test_exhausted_says_whether_the_sample_is_the_whole_file(sample: int, exhausted: bool) -> None:
    stream = HashingStream(io.BytesIO(DATA))
    stream.peek_sample(sample)
    assert stream.exhausted is exhausted


class Trickle(io.RawIOBase):
    """A source that returns at most 3 bytes per read (a pipe or socket)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(3, len(buffer), len(self.data))
        buffer[:count], self.data = self.data[:count], self.data[count:]
        return count


def test_sample_is_complete_even_from_a_source_giving_short_reads() -> None:
    stream = HashingStream(Trickle(DATA))
    assert stream.peek_sample(100) == DATA[:100]
    assert read_all(stream, 50) == DATA


def test_drain_reads_what_the_parser_left() -> None:
    stream = HashingStream(io.BytesIO(DATA))
    stream.peek_sample(10)
    stream.readinto(bytearray(20))
    stream.drain()
    assert stream.bytes_read == len(DATA)
    assert stream.sha256.hexdigest() == hashlib.sha256(DATA).hexdigest()


# -- UTF-8 check ------------------------------------------------------------------------------


def utf8_error_at(data: bytes, sample: int, size: int) -> int | None:
    stream = HashingStream(io.BytesIO(data))
    stream.peek_sample(sample)
    stream.check_utf8()
    read_all(stream, size)
    return stream.invalid_utf8_at


@pytest.mark.parametrize("size", [1, 2, 3, 7, 4096])
@pytest.mark.parametrize("sample", [0, 16, 1000])
def test_valid_utf8_split_anywhere_is_valid(size: int, sample: int) -> None:
    data = "é€😀,ü\n".encode() * 20
    assert utf8_error_at(data, sample, size) is None


@pytest.mark.parametrize("size", [1, 4, 64, 4096])
@pytest.mark.parametrize("sample", [0, 10, 100])
def test_invalid_byte_after_the_sample_is_located(size: int, sample: int) -> None:
    data = b"PLT,Name\n" + b"150,abc\n" * 20 + b"151,M\xfcller\n" + b"152,x\n"  # 0xFC is never UTF-8: 9 + 160 + 5
    assert utf8_error_at(data, sample, size) == 174


def test_not_checked_unless_asked() -> None:
    stream = HashingStream(io.BytesIO(b"a,b\n\xff\xfe\n"))
    read_all(stream, 64)
    assert stream.invalid_utf8_at is None


def test_only_the_first_invalid_byte_is_reported() -> None:
    assert utf8_error_at(b"ab\xffcd\xfe", 0, 64) == 2


@pytest.mark.parametrize(
    ("data", "size", "offset"),
    [
        (b"a\xc3(xyz", 2, 1),  # "\xc3" opens a two-byte character, "(" cannot continue it
        (b"Name\nJos\xe9\nAnn\n", 1, 8),  # a cp1252 e-acute (0xE9 opens a three-byte character in UTF-8)
        (b"Name\nJos\xe9\nAnn\n", 9, 8),
    ],
)
def test_invalid_sequence_split_over_two_reads_is_located_at_its_start(data: bytes, size: int, offset: int) -> None:
    assert utf8_error_at(data, 0, size) == offset


@pytest.mark.parametrize(("data", "offset"), [(b"ab\xc3", 2), (b"abc\xe2\x82", 3)])
def test_truncated_character_at_the_end_is_located(data: bytes, offset: int) -> None:
    assert utf8_error_at(data, 0, 4096) == offset


# -- seekable_source and rewound ---------------------------------------------------------------


def test_seekable_source_is_used_as_it_is() -> None:
    source = io.BytesIO(DATA)
    assert seekable_source(source) is source


class NotSeekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        return self.inner.readinto(buffer)


class NoSeekable:
    """Has read only (some wrappers of sockets and uploads)."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self.inner.read(size)


@pytest.mark.parametrize("make", [NotSeekable, NoSeekable], ids=["seekable() False", "no seekable()"])
def test_non_seekable_source_is_spooled(make) -> None:
    spooled = seekable_source(make(DATA))
    assert spooled.seekable()
    assert spooled.tell() == 0
    assert spooled.read() == DATA
    spooled.seek(0)
    assert spooled.read(5) == DATA[:5]


def test_a_pipe_is_spooled() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as writer:
        writer.write(DATA[:4000])  # below the pipe buffer: no writer thread needed
    with os.fdopen(read_end, "rb", buffering=0) as reader:
        spooled = seekable_source(reader)
        assert spooled is not reader
        assert spooled.read() == DATA[:4000]


def test_rewound_reads_from_the_start_and_leaves_the_source_open() -> None:
    source = io.BytesIO(b"xx" + DATA)
    source.read(100)
    again = rewound(source, 2)
    assert again.read() == DATA
    again.close()
    assert not source.closed


# -- invalid UTF-8 replaced on the way ----------------------------------------------------------


def replaced(data: bytes, sample: int, size: int, check: bool = False) -> tuple[bytes, HashingStream]:
    stream = HashingStream(io.BytesIO(data))
    stream.peek_sample(sample)
    if check:
        stream.check_utf8()
    stream.replace_invalid_utf8()
    return read_all(stream, size), stream


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 4096])
@pytest.mark.parametrize("sample", [0, 3, 16, 1000])
@pytest.mark.parametrize(
    "data",
    [
        DATA,
        "é€😀,ü\n".encode() * 20,
        b"PLT,Name\n" + b"150,abc\n" * 20 + b"151,M\xfcller\n" + b"152,x\xf0\x9f\n153,\xe2\x82",
        b"\xef\xbb\xbfa,b\n\xff\xfe,\xc3(\n\xed\xa0\x80,\xf4\x90\x80\x80\n\xc3",  # BOM, bad bytes, surrogates, cut end
    ],
)
def test_invalid_utf8_is_replaced_as_decoding_with_replace_does(data: bytes, sample: int, size: int) -> None:
    out, stream = replaced(data, sample, size, check=True)
    assert out == data.decode("utf-8", errors="replace").encode("utf-8")
    assert stream.sha256.hexdigest() == hashlib.sha256(data).hexdigest()  # the bytes as read
    assert stream.bytes_read == len(data)
    assert stream.quotes == data.count(b'"')


def test_replacing_keeps_the_first_invalid_byte_reported() -> None:
    _, stream = replaced(b"ab\xffcd\xfe", 0, 64, check=True)
    assert stream.invalid_utf8_at == 2
