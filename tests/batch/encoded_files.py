"""Files as a Windows spreadsheet saves them (issue 14 item 6), written byte by byte so the test reads real bytes.

- Windows-1252 ("CSV (semicolon delimited)" in a German Excel): `x10³/µL` is the bytes 0xB3 (³) and 0xB5 (µ), not
  UTF-8; the decimal mark is a comma.
- UTF-16 ("Unicode text"): a byte order mark FF FE, then two bytes per character; tab-delimited.
- A file whose only id column is `id`: read as a sample id, so its rows have no patient id.

Values: platelets 45 ×10⁹/L is thrombocytopenia (< 150) with CTCAE v5.0 grade 3 (< 50 to 25), clinical-rules §4;
WBC 2.1 is below 4.0 (leukopenia, §2 adult range 4.0-10.0); Hb 8.2 g/dL is anaemia in a woman (< 12, §4).
"""

from __future__ import annotations

from pathlib import Path

#: MRN;Sex;Age;PLT (x10³/µL);WBC (x10³/µL);Hb (g/dL) in Windows-1252, CRLF line ends, decimal commas.
WINDOWS_1252_BYTES = (
    b"MRN;Sex;Age;PLT (x10\xb3/\xb5L);WBC (x10\xb3/\xb5L);Hb (g/dL)\r\n"
    b"W1252-1;F;40;45;2,1;8,2\r\n"
    b"W1252-2;M;60;250;6,0;14,5\r\n"
)
#: The same table as Excel's "Unicode text": UTF-16 little-endian with its BOM, tab-delimited.
UTF16_TEXT = "MRN\tSex\tAge\tPLT (x10³/µL)\tHb (g/dL)\r\nU16-1\tF\t40\t45\t8,2\r\n"
UTF16_BYTES = b"\xff\xfe" + UTF16_TEXT.encode("utf-16-le")
#: `id` is read as a sample id (labservice.adapters.csv_input.headers): no column holds a patient id.
ID_ONLY_BYTES = b"id,sex,age,PLT (10^9/L),HGB (g/dL)\nA-1,F,40,45,12.5\nA-2,M,60,250,14.5\nA-3,F,30,abc,13.0\n"


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def windows_1252_file(folder: Path) -> Path:
    return write(folder, "cbc-windows-1252.csv", WINDOWS_1252_BYTES)


def utf16_file(folder: Path) -> Path:
    return write(folder, "cbc-unicode-text.csv", UTF16_BYTES)


def id_only_file(folder: Path) -> Path:
    return write(folder, "cbc-with-id-column.csv", ID_ONLY_BYTES)
