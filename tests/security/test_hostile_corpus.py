"""A corpus of hostile inputs, each sent to every POST (and PATCH) endpoint it applies to: the answer is a 4xx
problem+json, never a 5xx, and nothing is inflated, stored or echoed that should not be (issue 6, part 6).

The inputs: huge numbers (1e309, 10^400 written out as an integer, 2^64), NaN and Infinity literals, JSON nested
100,000 deep, a 10 MB string, bytes that are not UTF-8, NUL bytes (raw and as \\u0000), compression bombs (a gzip
of 1 GiB of zeros in about 1 MB, a gzip of a gzip expanding to 4 GiB in a few KB, a zip of 1 GiB) sent as the
batch file and as a body with Content-Encoding: gzip, overlong HL7 v2 fields, and a CSV line of a million columns.

The endpoints: POST /api/v1/interpretations, /api/v1/fhir/interpret, /api/v1/hl7v2/interpret, /api/v1/batches,
/cds-services/cbc-review (and its /feedback), and PATCH /api/v1/referrals/{id}; the service never inflates a
compressed body (werkzeug does not decode Content-Encoding), so a bomb is only ever its compressed size.
tests/api/test_hostile_inputs.py holds the exact messages for the interpretations endpoint. Everything runs on
SQLite and on PostgreSQL, which refuses some text SQLite keeps (NUL, strings longer than the column).

By design two answers here are not 4xx, and the tests say so: a CSV *cell* holding a hostile value is that row's
error inside a 202 (a batch keeps every row, README: CSV batches), and CDS Hooks answers a finite but implausible
value (2^64) with a 200 warning card naming the problem (an EHR shows nothing for a failed call, README: CDS Hooks).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from labservice.app import create_app
from tests.credentials import add_test_credentials
from tests.databases import empty_tables

pytestmark = pytest.mark.slow  # fuzzing: the hostile corpus through every endpoint

PROBLEM = "application/problem+json"
ER7 = "x-application/hl7-v2+er7"
MIB = 1 << 20


# --- compression bombs ------------------------------------------------------------------------------------


@functools.cache
def gzip_bomb(mebibytes: int = 1024) -> bytes:
    """A gzip file of `mebibytes` MiB of zeros: the same 1 MiB member repeated (gzip allows several members)."""
    return gzip.compress(bytes(MIB), compresslevel=9) * mebibytes


@functools.cache
def nested_gzip_bomb() -> bytes:
    """A gzip whose content is a gzip of 4 GiB of zeros: a few KB that expand to 4 MB, then to 4 GiB."""
    return gzip.compress(gzip_bomb(4096), compresslevel=9)


@functools.cache
def zip_bomb(mebibytes: int = 1024) -> bytes:
    """A zip holding results.csv, `mebibytes` MiB of zeros, written by hand: raw deflate segments of 1 MiB each
    (full flushes make them independent and byte-aligned), repeated, then an empty final block."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    deflated = segment * mebibytes + b"\x03\x00"
    crc = 0
    chunk = bytes(MIB)
    for _ in range(mebibytes):
        crc = zlib.crc32(chunk, crc)
    name = b"results.csv"
    size = mebibytes * MIB
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(deflated), size, len(name), 0) + name
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(deflated), size, len(name), 0, 0, 0, 0, 0, 0
        )
        + name
    )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(deflated), 0)
    return local + deflated + central + end


def test_the_bombs_are_what_they_claim():
    """The corpus itself: small files that a decompressor would inflate to gibibytes (checked without inflating
    more than a few MiB)."""
    assert len(gzip_bomb()) < 1.1 * MIB
    assert len(zlib.decompressobj(31).decompress(gzip_bomb(), MIB)) == MIB  # a first 1 MiB member of zeros
    assert len(nested_gzip_bomb()) < 64 * 1024
    inner = gzip.decompress(nested_gzip_bomb())
    assert inner == gzip_bomb(4096) and len(inner) < 5 * MIB  # 4096 members of 1 MiB: 4 GiB
    with zipfile.ZipFile(io.BytesIO(zip_bomb())) as archive:
        [entry] = archive.infolist()
        assert (entry.filename, entry.file_size, entry.compress_type) == (
            "results.csv",
            1024 * MIB,
            zipfile.ZIP_DEFLATED,
        )
        with archive.open(entry) as handle:
            assert handle.read(MIB) == bytes(MIB)
    assert len(zip_bomb()) < 1.1 * MIB


# --- the app ----------------------------------------------------------------------------------------------


NO_LIMITS = {"RATE_LIMIT": "off", "RATE_LIMIT_UPLOADS": "off"}  # hundreds of requests from one key


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hostile_app(request, tmp_path_factory, sqlite_template) -> Iterator[Flask]:
    """One app per database for the module (an app per test would cost most of the run): SQLite, and the run's
    throw-away PostgreSQL database, emptied when the module is done."""
    work = tmp_path_factory.mktemp("hostile")
    if request.param == "sqlite":
        shutil.copyfile(sqlite_template, work / "labservice.sqlite")
        url = f"sqlite:///{work / 'labservice.sqlite'}"
    else:
        url = request.getfixturevalue("postgresql_server_url")
        if url is None:
            pytest.skip("no PostgreSQL server reachable (set LABSERVICE_TEST_POSTGRES)")
    app = create_app({"TESTING": True, "DATABASE_URL": url, "BATCH_DIRECTORY": str(work / "batches"), **NO_LIMITS})
    add_test_credentials(app)
    yield app
    app.extensions["labservice.database"].engine.dispose()
    if request.param == "postgresql":
        empty_tables(url)


@pytest.fixture
def client(hostile_app) -> FlaskClient:
    return hostile_app.test_client()


@pytest.fixture(scope="module")
def referral_id(hostile_app) -> int:
    """An open referral to PATCH (platelets 15: a critical value, clinical-rules §3, so not routine)."""
    answer = hostile_app.test_client().post(
        "/api/v1/interpretations",
        json={"patient": {"id": "HOSTILE-1"}, "results": {"platelets": 15}, "collected_at": "2026-11-20T08:30:00Z"},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["stored"]["referral_id"]


def assert_4xx_problem(response, statuses: tuple[int, ...] = (400, 413, 415, 422)) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.get_data(as_text=True)[:400])
    assert response.mimetype == PROBLEM, response.mimetype
    body = response.get_json()
    assert body["status"] == response.status_code and body["detail"]
    return body


# --- the JSON endpoints -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JsonEndpoint:
    """A JSON endpoint, and where in its body a hostile number and a hostile string go."""

    name: str
    method: str
    path: str  # {referral} is replaced by an open referral's id
    content_type: str
    with_number: Callable[[bytes], bytes]
    with_string: Callable[[bytes], bytes]  # the string as JSON text, quotes included


def _replace(template: dict[str, Any], marker: str) -> Callable[[bytes], bytes]:
    text = json.dumps(template).encode()
    return lambda literal: text.replace(f'"{marker}"'.encode(), literal)


CBC = {"patient": {"id": "$S"}, "results": {"platelets": "$N"}, "collected_at": "2026-11-20T08:30:00Z"}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
    "subject": {"reference": "$S"},
    "effectiveDateTime": "2026-11-20T08:30:00Z",
    "valueQuantity": {"value": "$N", "unit": "10*3/uL", "system": "http://unitsofmeasure.org", "code": "10*3/uL"},
}
CDS_CALL = {
    "hook": "patient-view",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "context": {"userId": "Practitioner/1", "patientId": "$S"},
    "prefetch": {
        "patient": {"resourceType": "Patient", "id": "p1", "gender": "female"},
        "cbcObservations": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": {**OBSERVATION, "subject": {"reference": "Patient/p1"}}}],
        },
    },
}
FEEDBACK = {
    "feedback": [
        {
            "card": "$S",
            "outcome": "accepted",
            "outcomeTimestamp": "2026-11-20T08:30:00Z",
            "acceptedSuggestions": [{"id": "$N"}],
        }
    ]
}
CHANGE = {"status": "acknowledged", "note": "$S", "actor": "$N"}


def _cds_number(literal: bytes) -> bytes:
    return _replace({**CDS_CALL, "context": {**CDS_CALL["context"], "patientId": "p1"}}, "$N")(literal)


JSON_ENDPOINTS = [
    JsonEndpoint(
        "interpretations",
        "post",
        "/api/v1/interpretations",
        "application/json",
        _replace({**CBC, "patient": {"id": "P1"}}, "$N"),
        _replace({**CBC, "results": {"platelets": 45}}, "$S"),
    ),
    JsonEndpoint(
        "fhir",
        "post",
        "/api/v1/fhir/interpret",
        "application/fhir+json",
        _replace({**OBSERVATION, "subject": {"reference": "Patient/p1"}}, "$N"),
        _replace({**OBSERVATION, "valueQuantity": {**OBSERVATION["valueQuantity"], "value": 45}}, "$S"),
    ),
    JsonEndpoint("cds", "post", "/cds-services/cbc-review", "application/json", _cds_number, _replace(CDS_CALL, "$S")),
    JsonEndpoint(
        "cds-feedback",
        "post",
        "/cds-services/cbc-review/feedback",
        "application/json",
        _replace({"feedback": [{**FEEDBACK["feedback"][0], "card": "c1"}]}, "$N"),
        _replace({"feedback": [{**FEEDBACK["feedback"][0], "acceptedSuggestions": []}]}, "$S"),
    ),
    JsonEndpoint(
        "referral",
        "patch",
        "/api/v1/referrals/{referral}",
        "application/json",
        _replace({**CHANGE, "note": "ok"}, "$N"),
        _replace({**CHANGE, "actor": "dr.smith"}, "$S"),
    ),
]
IDS = [endpoint.name for endpoint in JSON_ENDPOINTS]


def send(client: FlaskClient, endpoint: JsonEndpoint, body: bytes, referral: int, **headers: str):
    path = endpoint.path.format(referral=referral)
    return getattr(client, endpoint.method)(
        f"{path}?store=false" if "interpret" in path else path,
        data=body,
        content_type=endpoint.content_type,
        headers=headers,
    )


HUGE_NUMBERS = {"1e309": b"1e309", "-1e309": b"-1e309", "10^400": b"1" + b"0" * 400, "2^64": b"18446744073709551616"}
NOT_NUMBERS = {"NaN": b"NaN", "Infinity": b"Infinity", "-Infinity": b"-Infinity"}


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS, ids=IDS)
@pytest.mark.parametrize("number", [*HUGE_NUMBERS, *NOT_NUMBERS])
def test_huge_and_non_finite_numbers(client, referral_id, endpoint, number):
    literal = {**HUGE_NUMBERS, **NOT_NUMBERS}[number]
    response = send(client, endpoint, endpoint.with_number(literal), referral_id)
    if endpoint.name == "cds" and number == "2^64":
        # Finite and valid FHIR, but not a platelet count: the card says so rather than an error the EHR hides.
        assert response.status_code == 200, response.get_data(as_text=True)
        [card] = response.get_json()["cards"]
        assert card["indicator"] == "warning" and "plausib" in card["detail"]
        return
    assert_4xx_problem(response)


NESTED = {"arrays": b"[" * 100_000 + b"]" * 100_000, "objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000}


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS, ids=IDS)
@pytest.mark.parametrize("shape", NESTED)
def test_json_nested_100000_deep(client, referral_id, endpoint, shape):
    problem = assert_4xx_problem(send(client, endpoint, NESTED[shape], referral_id), (400,))
    assert "nested too deeply" in problem["detail"]


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS, ids=IDS)
def test_a_10_mb_string_is_413(client, referral_id, endpoint):
    body = endpoint.with_string(b'"' + b"x" * (10 * MIB) + b'"')
    assert_4xx_problem(send(client, endpoint, body, referral_id), (413,))


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS, ids=IDS)
@pytest.mark.parametrize(
    "raw",
    [b'"\xff\xfe"', b'"caf\xe9"', b'"\xc3"', b'"\xed\xa0\x80"'],
    ids=["ff-fe", "latin-1", "truncated", "surrogate"],
)
def test_bytes_that_are_not_utf8(client, referral_id, endpoint, raw):
    """400 "not UTF-8"; except that json.loads of bytes decodes with surrogatepass, so the encoded surrogate
    ED A0 80 arrives as the string "\\ud800" and is refused as such (422) where a string is kept."""
    statuses = (400, 422) if raw == b'"\xed\xa0\x80"' else (400,)
    assert_4xx_problem(send(client, endpoint, endpoint.with_string(raw), referral_id), statuses)


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS, ids=IDS)
@pytest.mark.parametrize("nul", [b'"a\x00b"', b'"a\\u0000b"'], ids=["raw", "escaped"])
def test_nul_in_a_string(client, referral_id, endpoint, nul):
    """A raw NUL is not JSON (400); an escaped one is refused where the string is an id or a note (422), the
    text PostgreSQL could not store."""
    assert_4xx_problem(send(client, endpoint, endpoint.with_string(nul), referral_id), (400, 422))


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS, ids=IDS)
def test_a_lone_surrogate_escape_in_a_string(client, referral_id, endpoint):
    """ "\\ud800" is grammatical JSON but no Unicode text: it cannot be encoded as UTF-8 for the database or a
    file, so it is refused like bytes that are not UTF-8."""
    assert_4xx_problem(send(client, endpoint, endpoint.with_string(b'"a\\ud800b"'), referral_id), (400, 422))


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS, ids=IDS)
@pytest.mark.parametrize("bomb", ["gzip", "nested gzip"])
def test_a_gzip_bomb_with_content_encoding_is_not_inflated(client, referral_id, endpoint, bomb):
    body = gzip_bomb() if bomb == "gzip" else nested_gzip_bomb()
    assert_4xx_problem(send(client, endpoint, body, referral_id, **{"Content-Encoding": "gzip"}), (400, 415))


def test_nothing_hostile_is_stored(client, referral_id):
    """Every hostile number on every JSON endpoint stores nothing: the referrals and the patients are as before
    (interpretations are sent with store=false, and the refused ones stop before storing anyway)."""

    def stored() -> tuple[int, int]:
        referrals = client.get("/api/v1/referrals?status=all&per_page=200").get_json()["total"]
        return referrals, client.get(f"/api/v1/referrals/{referral_id}").get_json()["interpretation"]["id"]

    before = stored()
    for endpoint in JSON_ENDPOINTS:
        for literal in (*HUGE_NUMBERS.values(), *NOT_NUMBERS.values()):
            send(client, endpoint, endpoint.with_number(literal), referral_id)
    assert stored() == before


# --- HL7 v2 -----------------------------------------------------------------------------------------------

HL7 = (
    "MSH|^~\\&|LIS|LAB|labservice|HOSP|20261120093000+0000||ORU^R01^ORU_R01|$CONTROL|P|2.5.1\r"
    "PID|1||$PID^^^HOSP^MR||DOE^JANE||19920402|F\r"
    "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||$TIME\r"
    "OBX|1|NM|$CODE^Platelets^LN||$VALUE|$UNIT|150-410|L|||F\r"
)
HL7_DEFAULTS = {
    "$CONTROL": "MSG1",
    "$PID": "MRN-0042",
    "$TIME": "20261120083000+0000",
    "$CODE": "777-3",
    "$VALUE": "45",
    "$UNIT": "10*3/uL",
}


def hl7(**fields: str) -> bytes:
    text = HL7
    for marker, default in HL7_DEFAULTS.items():
        text = text.replace(marker, fields.get(marker.strip("$").lower(), default))
    return text.encode("utf-8", "surrogatepass")


def post_hl7(client: FlaskClient, body: bytes, **headers: str):
    return client.post("/api/v1/hl7v2/interpret?store=false", data=body, content_type=ER7, headers=headers)


def test_the_hl7_template_itself_is_answered(client):
    answer = post_hl7(client, hl7())
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["interpretations"][0]["analytes"]["platelets"]["value"] == 45


@pytest.mark.parametrize(
    "value",
    [
        "1e309",
        "-1e309",
        "1" + "0" * 400,
        "18446744073709551616",
        "NaN",
        "Infinity",
        "-Infinity",
        "4" * 1_500_000,
        "45\x00",
        "\x00",
    ],
    ids=["1e309", "-1e309", "10^400", "2^64", "NaN", "Infinity", "-Infinity", "1.5M digits", "NUL after", "NUL"],
)
def test_hostile_hl7_values(client, value):
    assert_4xx_problem(post_hl7(client, hl7(value=value)), (422,))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pid", "P" * 300),
        ("pid", "P" * 1_500_000),
        ("pid", "MRN\x00-42"),
        ("unit", "u" * 1_500_000),
        ("code", "7" * 1_500_000),
        ("value", "4" * 100_000 + "^45"),
    ],
    ids=["PID-3 300", "PID-3 1.5M", "PID-3 NUL", "OBX-6 1.5M", "OBX-3 1.5M", "OBX-5 SN 100k"],
)
def test_overlong_and_nul_hl7_fields_that_are_read(client, field, value):
    assert_4xx_problem(post_hl7(client, hl7(**{field: value})), (422,))


@pytest.mark.parametrize(
    ("field", "value"), [("control", "C" * 1_500_000), ("time", "2" * 1_500_000)], ids=["MSH-10 1.5M", "OBR-7 1.5M"]
)
def test_overlong_hl7_fields_that_are_only_echoed_or_noted(client, field, value):
    """MSH-10 is only echoed in the ACK, and an OBR-7 that is not a time is noted, not used: the CBC is still
    interpreted, and the answer does not carry the 1.5 MB back in the JSON."""
    answer = post_hl7(client, hl7(**{field: value}))
    assert answer.status_code == 200, answer.get_data(as_text=True)[:400]
    assert answer.get_json()["interpretations"][0]["analytes"]["platelets"]["value"] == 45


@pytest.mark.parametrize("body", [b"x" * (10 * MIB), hl7(value="4" * (10 * MIB))], ids=["10 MB", "10 MB OBX-5"])
def test_10_mb_hl7_is_413(client, body):
    assert_4xx_problem(post_hl7(client, body), (413,))


@pytest.mark.parametrize(
    "body",
    [hl7().replace(b"DOE", b"D\xffE"), b"\xff\xfe" + hl7(), hl7().replace(b"F\r", b"\xc3\r")],
    ids=["ff in PID-5", "ff-fe first", "truncated"],
)
def test_hl7_bytes_that_are_not_utf8(client, body):
    assert_4xx_problem(post_hl7(client, body), (400,))


@pytest.mark.parametrize("bomb", ["gzip", "nested gzip"])
def test_hl7_gzip_bomb(client, bomb):
    body = gzip_bomb() if bomb == "gzip" else nested_gzip_bomb()
    assert_4xx_problem(post_hl7(client, body, **{"Content-Encoding": "gzip"}), (400, 415))
    assert_4xx_problem(post_hl7(client, body), (400,))


# --- CSV batches ------------------------------------------------------------------------------------------


def upload(
    client: FlaskClient, data: bytes, name: str = "results.csv", mapping: str | bytes | None = None, **headers: str
):
    form: dict[str, Any] = {"file": (io.BytesIO(data), name)}
    if isinstance(mapping, bytes):
        form["mapping"] = (io.BytesIO(mapping), "mapping.json")
    elif mapping is not None:
        form["mapping"] = mapping
    return client.post("/api/v1/batches", data=form, content_type="multipart/form-data", headers=headers)


BATCH_FILES = {
    "gzip bomb": lambda: gzip_bomb(),
    "nested gzip bomb": lambda: nested_gzip_bomb(),
    "zip bomb": lambda: zip_bomb(),
    "a million columns on one line": lambda: b",".join([b"PLT"] * 1_000_000) + b"\n45\n",
    "a million columns, no line break": lambda: b",".join([b"1"] * 1_000_000),
    "20,000 columns": lambda: b",".join([b"PLT"] + [b"c%d" % i for i in range(20_000)]) + b"\n45\n",
    "a 10 MB header": lambda: b"PLT" + b"x" * (10 * MIB) + b"\n45\n",
    "NUL bytes": lambda: b"PLT,HGB\n45\x00,12\n",
    "UTF-16": lambda: "PLT,HGB\n45,12\n".encode("utf-16"),
    "not UTF-8, no analyte": lambda: b"\xff\xfe\xfd,\x80\x81\n1,2\n",
    "empty": lambda: b"",
}


@pytest.mark.parametrize("name", BATCH_FILES)
def test_hostile_batch_files(client, name):
    problem = assert_4xx_problem(
        upload(client, BATCH_FILES[name](), "results.csv.gz" if "gzip" in name else "results.csv"), (413, 422)
    )
    assert "file" in problem["errors"]


def test_a_batch_file_of_a_million_columns_is_refused_quickly(client):
    """Refused from the first 256 KiB, before pandas sees a million columns (a bound on time, not a benchmark:
    the parser would take minutes and gigabytes)."""
    import time

    start = time.perf_counter()
    problem = assert_4xx_problem(upload(client, BATCH_FILES["a million columns on one line"]()), (422,))
    assert "header line is longer" in problem["detail"]
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize(
    ("name", "mapping"),
    [
        ("nested arrays", "[" * 100_000 + "]" * 100_000),
        ("nested objects as a file part", ('{"a":' * 100_000 + "1" + "}" * 100_000).encode()),
        ("NaN", '{"units": {"platelets": NaN}}'),
        ("1e309", '{"shape": 1e309}'),
        ("10^400", '{"date_order": ' + "1" * 400 + "}"),
        ("not UTF-8", b'{"units": {"platelets": "\xff"}}'),
        ("NUL", '{"columns": {"P\\u0000LT": "platelets"}}'),
        ("10 MB", '{"columns": {"' + "x" * (10 * MIB) + '": "platelets"}}'),
    ],
)
def test_hostile_mappings(client, name, mapping):
    problem = assert_4xx_problem(upload(client, b"PLT\n45\n", mapping=mapping), (413, 422))
    assert problem["status"] == 413 or "mapping" in problem["errors"]


def test_a_multipart_body_with_content_encoding_gzip_is_not_inflated(client):
    boundary = "hostile7d0c"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\nPLT\n45\n\r\n--{boundary}--\r\n"
    ).encode()
    response = client.post(
        "/api/v1/batches",
        data=gzip.compress(body),
        headers={"Content-Encoding": "gzip"},
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert_4xx_problem(response, (400, 415, 422))


@pytest.mark.parametrize(
    "cell", ["1e309", "1" + "0" * 400, "18446744073709551616", "Infinity", "-1e309", "4" * 100_000]
)  # ("NaN" is one of the CSV reader's words for a missing cell)
def test_a_hostile_cell_is_its_rows_error_in_a_batch_that_keeps_every_row(client, cell):
    """A cell is not the file: the row is rejected with its line and column, the other rows are interpreted."""
    response = upload(client, f"Patient ID,PLT,HGB\nH1,{cell},12\nH2,45,12\n".encode())
    assert response.status_code == 202, response.get_data(as_text=True)[:400]
    summary = response.get_json()["summary"]
    assert (summary["rows_out"], summary["interpreted"], summary["rejected"]) == (2, 1, 1)
    assert summary["first_errors"][0].startswith("line 2, column PLT")


@pytest.mark.parametrize(
    ("ids", "stored"), [(["P" * 201, "OK-1"], 1), (["A\x00B", "OK-2"], 1)], ids=["id of 201 characters", "id with NUL"]
)
def test_a_hostile_patient_id_cell_is_interpreted_not_stored(client, ids, stored):
    """Past the first 4 KiB (where a NUL makes the whole file binary), an id PostgreSQL cannot store is
    interpreted and not kept, as the JSON API refuses it. (The filler ids are this case's own: new results.)"""
    tag = ids[1]
    filler = "".join(f"F{tag}-{i},250,14\n" for i in range(400))
    data = ("Patient ID,PLT,HGB\n" + filler + f"{ids[0]},15,12\n{ids[1]},15,12\n").encode()
    response = upload(client, data)
    assert response.status_code == 202, response.get_data(as_text=True)[:400]
    assert response.get_json()["summary"]["interpreted"] == 402
    assert response.get_json()["summary"]["stored"] == 400 + stored
