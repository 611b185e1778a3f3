"""POST /api/v1/batches: upload a CSV of CBCs, get a summary, download every row as CSV and JSON.

Expected clinical values are derived by hand from /work/shared/clinical-rules.md (cited as §n), never
from running the service. MIMIC-III demo data: MIMIC-III Clinical Database Demo v1.4, PhysioNet / MIT
Laboratory for Computational Physiology (Johnson AEW et al., Sci Data 2016;
https://physionet.org/content/mimiciii-demo/1.4/), licensed under the Open Data Commons Open Database
License v1.0 (ODbL; /work/shared/fixtures/mimic-iii-demo/LICENSE.txt): credit PhysioNet and MIT-LCP.
The file is read unchanged and not redistributed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from labservice.batch import BatchFileError, load_mapping_text, run_batch
from labservice.batch.results_store import BatchStore, batch_id_for, canonical_json
from labservice.batch.summary import BatchSummary
from labservice.cli import main as cli_main
from labservice.config import load_settings
from labservice.extensions import RULESET_EXTENSION
from tests.api.helpers import URL as INTERPRETATIONS
from tests.api.helpers import assert_problem
from tests.shared_data import MIMIC_CLOCK_SKEW_SECONDS, MIMIC_LABEVENTS, MIMIC_MAPPING

BATCHES = "/api/v1/batches"
LABEVENTS = MIMIC_LABEVENTS

# Adult fallback ranges (§2): platelets 150-410, WBC 4.0-10.0, neutrophils 2.0-7.0, lymphocytes 1.0-3.0,
# Hb female 12.0-15.0 / male 13.0-17.0; critical values §3; CTCAE v5.0 grades §4.
WIDE_CSV = (
    b"sample_id,sex,age,platelets,wbc,hemoglobin,neutrophils,lymphocytes\n"
    # S1 female 34: every value inside its range -> nothing to report, routine.
    b"S1,F,34,250,6.0,13.5,3.5,2.0\n"
    # S2 male 67: platelets 45 < 150 -> L, thrombocytopenia, CTCAE 3 (< 50-25); isolated, but a CSV sends no
    # skin examination, so no possible_pseudothrombocytopenia (§8 v2: "skin not sent is not 'no bleeding
    # signs'"; v1 suggested it); thrombocytopenia < 100 -> soon (§9).
    b"S2,M,67,45,6.0,14.5,3.5,2.0\n"
    # S3 female 52: platelets 12 (< 20: LL, CTCAE 4), WBC 1.5 (< 2.0: LL, CTCAE 3), Hb 6.5 (< 7.0: LL,
    # CTCAE 3), neutrophils 0.3 (< 0.5: LL, CTCAE 4), lymphocytes 0.9 (L, CTCAE 1). Three lineages low ->
    # pancytopenia; Hb < 10, neutrophils < 1.5, platelets < 50 -> marrow_failure_range; new critical values
    # -> immediate (v2 changes the v1 `urgent`: clinical-rules.md §3 lines 99-105, §9 line 243).
    # §6: neutrophils < 0.5 and platelets < 20, neutrophils not < 0.2 -> severe.
    b"S3,F,52,12,1.5,6.5,0.3,0.9\n"
    # S4 male 60: platelets 520 > 410 -> H, >= 450 -> thrombocytosis; routine.
    b"S4,M,60,520,8.0,15.0,5.0,2.5\n"
    # S5: platelets "abc" is not a number -> an error row at its place, not interpreted.
    b"S5,F,40,abc,6.0,13.5,3.5,2.0\n"
)
S3_FINDINGS = {
    "thrombocytopenia",
    "anemia",
    "neutropenia",
    "leukopenia",
    "lymphopenia",
    "pancytopenia",
    "marrow_failure_range",
    "critical_value",
}


@pytest.fixture
def batch_app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    return make_app(BATCH_DIRECTORY=str(tmp_path / "batches"))


@pytest.fixture
def client(batch_app: Flask) -> FlaskClient:
    return batch_app.test_client()


def upload(client: FlaskClient, data: bytes, mapping: dict[str, Any] | str | None = None, filename: str = "cbc.csv"):
    form: dict[str, Any] = {"file": (io.BytesIO(data), filename)}
    if mapping is not None:
        form["mapping"] = mapping if isinstance(mapping, str) else json.dumps(mapping)
    return client.post(BATCHES, data=form, content_type="multipart/form-data")


def created(response) -> dict[str, Any]:
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def codes(cell: str) -> set[str]:
    return {code for code in cell.split(";") if code}


def batch_dirs(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


# ------------------------------------------------------------------------------------- the answer


def test_upload_answers_202_with_the_summary_and_links(client):
    response = upload(client, WIDE_CSV)
    body = created(response)
    batch_id = body["batch_id"]
    assert len(batch_id) == 32 and all(c in "0123456789abcdef" for c in batch_id)
    assert response.headers["Location"] == f"{BATCHES}/{batch_id}"
    assert body["content_sha256"] == hashlib.sha256(WIDE_CSV).hexdigest()
    assert body["already_uploaded"] is False
    assert body["links"] == {
        "self": f"{BATCHES}/{batch_id}",
        "csv": f"{BATCHES}/{batch_id}/result.csv",
        "json": f"{BATCHES}/{batch_id}/result.json",
    }
    summary = body["summary"]
    assert summary["shape"] == "wide"
    assert (summary["rows_in"], summary["rows_out"], summary["interpreted"], summary["rejected"]) == (5, 5, 4, 1)
    assert summary["by_urgency"] == {"routine": 2, "soon": 1, "immediate": 1}  # S3: new critical values (§9 v2)
    expected_findings = {code: 1 for code in S3_FINDINGS | {"thrombocytosis"}}  # §8 v2: no pseudo for S2
    expected_findings["thrombocytopenia"] = 2  # S2 and S3
    assert summary["by_finding"] == expected_findings
    assert summary["content_sha256"] == body["content_sha256"]
    assert summary["bytes_read"] == len(WIDE_CSV)
    assert any("line 6" in error and "platelets" in error for error in summary["first_errors"])


def test_get_batch_answers_the_stored_summary(client):
    posted = created(upload(client, WIDE_CSV))
    response = client.get(posted["links"]["self"])
    assert response.status_code == 200
    got = response.get_json()
    assert "already_uploaded" not in got and "warnings" not in got  # the upload answer's own members
    upload_only = ("already_uploaded", "warnings")
    assert {key: value for key, value in posted.items() if key not in upload_only} == got


def test_csv_download_has_every_row_in_input_order(client):
    body = created(upload(client, WIDE_CSV))
    response = client.get(body["links"]["csv"])
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    # Issue 14 item 5: named after the upload, cbc.csv (RFC 6266)
    assert disposition == "attachment; filename=\"cbc.interpreted.csv\"; filename*=UTF-8''cbc.interpreted.csv"
    reader = csv.DictReader(io.StringIO(response.get_data(as_text=True), newline=""))
    rows = list(reader)
    assert reader.fieldnames == body["summary"]["output_columns"]
    assert [row["sample_id"] for row in rows] == ["S1", "S2", "S3", "S4", "S5"]
    assert [row["line"] for row in rows] == ["2", "3", "4", "5", "6"]
    s1, s2, s3, s4, s5 = rows
    assert (s1["urgency"], codes(s1["findings"]), s1["platelets_flag"]) == ("routine", set(), "N")
    assert s2["urgency"] == "soon"
    assert codes(s2["findings"]) == {"thrombocytopenia"}  # §8 v2: no skin examination in a CSV
    assert (s2["platelets_flag"], s2["platelets_ctcae_grade"]) == ("L", "3")
    assert (s2["wbc_flag"], s2["hemoglobin_flag"], s2["neutrophils_flag"]) == ("N", "N", "N")
    assert s3["urgency"] == "immediate" and codes(s3["findings"]) == S3_FINDINGS  # §9 line 243 (*v2*; v1: urgent)
    assert s3["aplastic_anemia"] == "severe"
    assert [
        (s3[f"{a}_flag"], s3[f"{a}_ctcae_grade"])
        for a in ("platelets", "wbc", "hemoglobin", "neutrophils", "lymphocytes")
    ] == [("LL", "4"), ("LL", "3"), ("LL", "3"), ("LL", "4"), ("L", "1")]
    assert (s4["urgency"], codes(s4["findings"]), s4["platelets_flag"]) == ("routine", {"thrombocytosis"}, "H")
    assert s5["urgency"] == "" and "platelets" in s5["error"] and "abc" in s5["error"]


def test_json_download_has_every_row_in_input_order(client):
    body = created(upload(client, WIDE_CSV))
    response = client.get(body["links"]["json"])
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert 'filename="cbc.interpreted.json"' in response.headers["Content-Disposition"]
    rows = json.loads(response.get_data())
    assert [row["ids"]["sample_id"] for row in rows] == ["S1", "S2", "S3", "S4", "S5"]
    assert [row["line"] for row in rows] == [2, 3, 4, 5, 6]
    assert rows[1]["flags"]["platelets"] == "L" and rows[1]["ctcae_grades"]["platelets"] == 3
    assert set(rows[2]["findings"]) == S3_FINDINGS
    assert rows[4]["error"] and rows[4]["urgency"] is None


def test_results_are_stored_under_the_batch_directory(batch_app, client, tmp_path):
    body = created(upload(client, WIDE_CSV))
    folder = tmp_path / "batches" / body["batch_id"]
    assert sorted(os.listdir(folder)) == ["pages.npz", "patients.json", "result.csv", "result.json", "summary.json"]
    assert batch_dirs(tmp_path / "batches") == [body["batch_id"]], "no partial directory is left behind"
    assert json.loads((folder / "summary.json").read_text())["summary"] == body["summary"]


def test_batch_directory_defaults_to_the_instance_folder(make_app):
    app = make_app(BATCH_DIRECTORY="")
    assert app.config["BATCH_DIRECTORY"] == os.path.join(app.instance_path, "batches")


def test_settings_from_the_environment():
    settings = load_settings({"LABSERVICE_MAX_UPLOAD_BYTES": "1000", "LABSERVICE_BATCH_DIRECTORY": "/srv/b"})
    assert (settings["MAX_UPLOAD_BYTES"], settings["BATCH_DIRECTORY"]) == (1000, "/srv/b")
    assert load_settings({})["MAX_UPLOAD_BYTES"] == 256 * 1024 * 1024


# ------------------------------------------------------------------------------ the same file twice


def test_the_same_upload_twice_is_recognised_and_not_interpreted_again(client, monkeypatch):
    first = created(upload(client, WIDE_CSV, filename="first.csv"))

    def must_not_run(*args, **kwargs):
        raise AssertionError("a known batch was interpreted again")

    monkeypatch.setattr("labservice.services.batch_jobs.run_batch", must_not_run)
    response = upload(client, WIDE_CSV, filename="renamed.csv")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Location" not in response.headers
    second = response.get_json()
    assert second["already_uploaded"] is True
    assert second["batch_id"] == first["batch_id"]
    assert second["summary"] == first["summary"]


def test_an_equivalent_mapping_is_the_same_batch(client):
    first = created(upload(client, WIDE_CSV))
    # An empty mapping and "shape": "auto" state the defaults: nothing that changes the output.
    for mapping in ({}, {"shape": "auto"}, "  "):
        response = upload(client, WIDE_CSV, mapping=mapping)
        assert response.status_code == 200, mapping
        assert response.get_json()["batch_id"] == first["batch_id"]


def test_a_different_mapping_or_file_is_a_different_batch(client):
    first = created(upload(client, WIDE_CSV))
    other_mapping = created(upload(client, WIDE_CSV, mapping={"columns": {"age": "ignore"}}))
    other_file = created(upload(client, WIDE_CSV + b"S6,F,30,300,6.0,13.5,3.5,2.0\n"))
    assert len({first["batch_id"], other_mapping["batch_id"], other_file["batch_id"]}) == 3
    assert other_mapping["content_sha256"] == first["content_sha256"]
    assert other_mapping["mapping"] == {"columns": {"age": "ignore"}}
    assert other_file["summary"]["rows_in"] == 6


def test_batch_id_is_derived_from_content_mapping_and_ruleset(batch_app, client):
    body = created(upload(client, WIDE_CSV, mapping={"columns": {"age": "ignore"}}))
    version = batch_app.extensions[RULESET_EXTENSION].version
    key = "\n".join((hashlib.sha256(WIDE_CSV).hexdigest(), canonical_json({"columns": {"age": "ignore"}}), version))
    assert body["batch_id"] == hashlib.sha256(key.encode()).hexdigest()[:32]


def test_mapping_may_be_sent_as_a_file_part(client):
    by_text = created(upload(client, WIDE_CSV, mapping={"columns": {"age": "ignore"}}))
    form = {
        "file": (io.BytesIO(WIDE_CSV), "cbc.csv"),
        "mapping": (io.BytesIO(b'{"columns": {"age": "ignore"}}'), "mapping.json"),
    }
    response = client.post(BATCHES, data=form, content_type="multipart/form-data")
    assert response.status_code == 200
    assert response.get_json()["batch_id"] == by_text["batch_id"]


# ------------------------------------------------------------------------------------------ MIMIC


def test_mimic_labevents_with_its_mapping(client):
    client.application.config["CLOCK_SKEW_SECONDS"] = MIMIC_CLOCK_SKEW_SECONDS  # its dates lie in 2102-2202
    data = LABEVENTS.read_bytes()
    assert len(data) > load_settings({})["MAX_CONTENT_LENGTH"], "larger than the JSON endpoints accept"
    # Independent expectations, with the csv module: results read, results of unmapped items, and one
    # CBC per distinct (HADM_ID, CHARTTIME) with a mapped item (an empty HADM_ID included).
    with LABEVENTS.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    mapped = [r for r in records if r["ITEMID"] in MIMIC_MAPPING["items"]]
    groups = list(dict.fromkeys((r["HADM_ID"], r["CHARTTIME"]) for r in mapped))

    body = created(upload(client, data, mapping=MIMIC_MAPPING, filename="LABEVENTS.csv"))
    summary = body["summary"]
    assert body["content_sha256"] == hashlib.sha256(data).hexdigest()
    assert summary["shape"] == "long"
    assert summary["rows_in"] == len(records) == 76_074
    assert summary["ignored_results"] == len(records) - len(mapped)
    assert summary["rows_out"] == len(groups)
    assert summary["interpreted"] + summary["rejected"] == summary["rows_out"]
    assert sum(summary["by_urgency"].values()) == summary["interpreted"]
    assert summary["by_finding"]["thrombocytopenia"] > 0

    rows = list(csv.DictReader(io.StringIO(client.get(body["links"]["csv"]).get_data(as_text=True), newline="")))
    assert [(row["HADM_ID"], row["CHARTTIME"]) for row in rows] == groups, "one row per CBC, first-seen order"
    json_rows = json.loads(client.get(body["links"]["json"]).get_data())
    assert [row["line"] for row in json_rows] == [int(row["line"]) for row in rows]

    again = upload(client, data, mapping=MIMIC_MAPPING)
    assert again.status_code == 200
    assert (again.get_json()["already_uploaded"], again.get_json()["batch_id"]) == (True, body["batch_id"])
    fewer_items = {**MIMIC_MAPPING, "items": {k: v for k, v in MIMIC_MAPPING["items"].items() if k != "51283"}}
    other = created(upload(client, data, mapping=fewer_items))
    assert other["batch_id"] != body["batch_id"]
    assert other["content_sha256"] == body["content_sha256"]


# ---------------------------------------------------------------- identical to the command line


@pytest.mark.parametrize("case", ["wide", "mimic"])
def test_download_is_byte_for_byte_what_run_batch_and_the_cli_write(batch_app, client, tmp_path, case):
    if case == "wide":
        data, mapping = WIDE_CSV, None
    else:
        data, mapping = LABEVENTS.read_bytes(), MIMIC_MAPPING
        batch_app.config["CLOCK_SKEW_SECONDS"] = MIMIC_CLOCK_SKEW_SECONDS  # its dates lie in 2102-2202
    body = created(upload(client, data, mapping=mapping))
    downloaded_csv = client.get(body["links"]["csv"]).get_data()
    downloaded_json = client.get(body["links"]["json"]).get_data()

    options = load_mapping_text(json.dumps(mapping or {}))
    csv_out, json_out = io.StringIO(newline=""), io.StringIO(newline="")
    summary = run_batch(
        io.BytesIO(data),
        csv_out=csv_out,
        json_out=json_out,
        options=options,
        ruleset=batch_app.extensions[RULESET_EXTENSION],
    )
    assert downloaded_csv == csv_out.getvalue().encode("utf-8")
    assert downloaded_json == json_out.getvalue().encode("utf-8")
    assert body["summary"] == summary.to_dict()

    source = tmp_path / "input.csv"
    source.write_bytes(data)
    argv = ["interpret", str(source), "--quiet"]
    if mapping:
        (tmp_path / "mapping.json").write_text(json.dumps(mapping))
        argv += ["--mapping", str(tmp_path / "mapping.json")]
    for suffix, downloaded in (("csv", downloaded_csv), ("json", downloaded_json)):
        target = tmp_path / f"cli.{suffix}"
        assert cli_main([*argv, "-o", str(target)]) in (0, 1)
        assert target.read_bytes() == downloaded, f"the CLI's {suffix} differs"


# ------------------------------------------------------------------------------------ size limits


def test_upload_above_max_upload_bytes_answers_413(make_app, tmp_path):
    client = make_app(MAX_UPLOAD_BYTES=1000, BATCH_DIRECTORY=str(tmp_path / "batches")).test_client()
    big = WIDE_CSV + b"S9,F,30,300,6.0,13.5,3.5,2.0\n" * 40
    body = assert_problem(upload(client, big), 413)
    assert "1000" in body["detail"]
    assert "file" in body["errors"]
    assert batch_dirs(tmp_path / "batches") == []
    assert upload(client, WIDE_CSV).status_code == 202, "a small upload is still accepted"


def test_upload_limit_does_not_raise_the_limit_of_json_requests(make_app, tmp_path):
    app = make_app(MAX_UPLOAD_BYTES=64 * 1024 * 1024, BATCH_DIRECTORY=str(tmp_path))
    client = app.test_client()
    limit = app.config["MAX_CONTENT_LENGTH"]
    assert limit == 2 * 1024 * 1024
    padding = " " * (limit + 1)
    response = client.post(
        INTERPRETATIONS, data='{"results": {"platelets": 300}}' + padding, content_type="application/json"
    )
    body = assert_problem(response, 413)
    assert str(limit) in body["detail"]
    # ... while an upload larger than MAX_CONTENT_LENGTH is accepted by the batch endpoint.
    big = WIDE_CSV + b"S9,F,30,300,6.0,13.5,3.5,2.0\n" * (limit // 28 + 1)
    assert len(big) > limit
    assert created(upload(client, big))["summary"]["rows_in"] == 5 + limit // 28 + 1


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "content_type,data",
    [
        ("application/json", b'{"file": "x"}'),
        ("text/csv", WIDE_CSV),
        ("application/x-www-form-urlencoded", b"file=x"),
    ],
)
def test_not_multipart_answers_415(client, content_type, data):
    body = assert_problem(client.post(BATCHES, data=data, content_type=content_type), 415)
    assert "multipart/form-data" in body["detail"]


def test_missing_file_answers_422_naming_file(client, tmp_path):
    body = assert_problem(client.post(BATCHES, data={"mapping": "{}"}, content_type="multipart/form-data"), 422)
    assert "file" in body["errors"]
    body = assert_problem(
        client.post(BATCHES, data={"file": "not a file part"}, content_type="multipart/form-data"), 422
    )
    assert "file" in body["errors"] and "file part" in body["detail"]
    assert batch_dirs(tmp_path / "batches") == []


@pytest.mark.parametrize(
    "mapping,says",
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"shape": "diagonal"}', "shape"),
        ('{"colour": "red"}', "colour"),
        ('{"columns": {"PLT": 5.5}}', "columns"),
        ('{"date_order": "YMD"}', "date_order"),
    ],
)
def test_bad_mapping_answers_422_naming_mapping(client, mapping, says):
    body = assert_problem(upload(client, WIDE_CSV, mapping=mapping), 422)
    assert set(body["errors"]) == {"mapping"}
    assert says in body["errors"]["mapping"][0]
    assert says in body["detail"]


@pytest.mark.parametrize(
    "data,says",
    [
        (b"patient,visit\nP1,3\nP2,4\n", "no column holds a CBC analyte"),
        (b"", "empty"),
        (b"\x00\x01\x02\xff\xfe binary", "binary"),
    ],
)
def test_unusable_file_answers_422_naming_file(client, tmp_path, data, says):
    body = assert_problem(upload(client, data), 422)
    assert set(body["errors"]) == {"file"}
    message = body["errors"]["file"][0]
    assert says in message and message in body["detail"]
    assert batch_dirs(tmp_path / "batches") == [], "nothing is kept of an unusable file"


def test_unknown_batch_answers_404(client):
    unknown = "0" * 32
    for suffix in ("", "/result.csv", "/result.json"):
        assert_problem(client.get(f"{BATCHES}/{unknown}{suffix}"), 404)


@pytest.mark.parametrize(
    "batch_id",
    [
        "..",
        "%2E%2E",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2fsummary.json",
        "ABCDEF0123456789ABCDEF0123456789",
        "0" * 31,
        "0" * 33,
        "summary.json",
        ".partial-x",
    ],
)
def test_path_traversal_and_malformed_ids_answer_404(client, batch_id):
    created(upload(client, WIDE_CSV))  # something to reach if the id were used as a path
    for suffix in ("", "/result.csv", "/result.json"):
        response = client.get(f"{BATCHES}/{batch_id}{suffix}")
        assert response.status_code == 404, (batch_id, suffix)
        assert response.mimetype == "application/problem+json"


def test_a_stored_batch_id_in_upper_case_answers_404(client):
    body = created(upload(client, WIDE_CSV))
    assert_problem(client.get(f"{BATCHES}/{body['batch_id'].upper()}"), 404)
    assert client.get(f"{BATCHES}/{body['batch_id']}").status_code == 200


# ----------------------------------------------------------------------------------------- store


def test_store_keeps_nothing_when_producing_fails(tmp_path):
    store = BatchStore(tmp_path)
    batch_id = "a" * 32

    def fails(csv_out, json_out):
        csv_out.write("half a result")
        raise BatchFileError("broken")

    with pytest.raises(BatchFileError):
        store.save(batch_id, fails)
    assert store.get(batch_id) is None
    assert batch_dirs(tmp_path) == []


def test_store_keeps_the_first_of_two_saves_of_one_batch(tmp_path):
    store = BatchStore(tmp_path)
    batch_id = "b" * 32

    def produce(text: str) -> Callable[..., dict[str, Any]]:
        def write(csv_out, json_out):
            csv_out.write(text)
            json_out.write("[]\n")
            return {"made_by": text}

        return write

    first, made = store.save(batch_id, produce("first"))
    assert made and first.csv_path.read_text() == "first"
    second, made = store.save(batch_id, produce("second"))
    assert not made
    assert second.record == {"made_by": "first"} and second.csv_path.read_text() == "first"
    assert batch_dirs(tmp_path) == [batch_id]


def test_store_refuses_what_is_not_a_batch_id(tmp_path):
    store = BatchStore(tmp_path)
    assert store.get("../etc") is None
    with pytest.raises(ValueError):
        store.save("../escape", lambda c, j: {})
    assert batch_id_for("0" * 64, {}, "v1") != batch_id_for("0" * 64, {"shape": "long"}, "v1")
    assert batch_id_for("0" * 64, {}, "v1") != batch_id_for("0" * 64, {}, "v2")


# ---------------------------------------------------------------------------------------- OpenAPI


def test_openapi_documents_the_batch_endpoints(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    post = paths[BATCHES]["post"]
    multipart = post["requestBody"]["content"]["multipart/form-data"]
    upload_schema = spec["components"]["schemas"][multipart["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert upload_schema["required"] == ["file"]
    assert upload_schema["properties"]["file"] == {
        **upload_schema["properties"]["file"],
        "type": "string",
        "format": "binary",
    }
    assert upload_schema["properties"]["mapping"]["type"] == "string"
    assert upload_schema["properties"]["excel"]["enum"] == ["true", "false"]  # issue 14 item 5
    csv_path = BATCHES + "/{batch_id}/result.csv"
    for path, method in ((BATCHES, "post"), (BATCHES + "/{batch_id}", "get"), (csv_path, "get")):
        [excel] = [p for p in paths[path][method]["parameters"] if p.get("name") == "excel"]
        assert excel["in"] == "query" and excel["schema"]["type"] == "boolean"
        assert "byte order mark" in excel["description"]
    disposition = paths[csv_path]["get"]["responses"]["200"]["headers"]["Content-Disposition"]
    assert "cbc-results.interpreted" in disposition["description"]
    assert {"200", "202", "413", "415", "422"} <= set(post["responses"])
    for status in ("413", "415", "422"):
        assert "application/problem+json" in post["responses"][status]["content"]
    assert "get" in paths[BATCHES + "/{batch_id}"]
    assert "text/csv" in paths[BATCHES + "/{batch_id}/result.csv"]["get"]["responses"]["200"]["content"]
    assert "application/json" in paths[BATCHES + "/{batch_id}/result.json"]["get"]["responses"]["200"]["content"]
    for path in (BATCHES + "/{batch_id}", BATCHES + "/{batch_id}/result.csv", BATCHES + "/{batch_id}/result.json"):
        assert "404" in paths[path]["get"]["responses"]


def test_openapi_batch_schema_documents_every_field_answered(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    body = created(upload(client, WIDE_CSV))
    assert set(body) <= set(schemas["Batch"]["properties"])
    assert set(BatchSummary().to_dict()) == set(schemas["BatchSummary"]["properties"])
    assert set(body["summary"]) <= set(schemas["BatchSummary"]["properties"])
    assert set(body["links"]) == set(schemas["BatchLinks"]["properties"])


def test_the_builtin_mimic_mapping_works_by_name_as_in_the_cli(make_app):
    """Issue 14 item 6: `mapping=mimic-iii-labevents` names the built-in mapping over HTTP (and so on the
    dashboard's upload, which shares this code) as `labservice interpret --mapping mimic-iii-labevents` does."""
    from tests.shared_data import MIMIC_CLOCK_SKEW_SECONDS, MIMIC_LABEVENTS

    client = make_app(CLOCK_SKEW_SECONDS=MIMIC_CLOCK_SKEW_SECONDS).test_client()
    by_name = upload(client, MIMIC_LABEVENTS.read_bytes(), "mimic-iii-labevents")
    assert by_name.status_code == 202, by_name.get_data(as_text=True)
    summary = client.get(by_name.headers["Location"]).get_json()["summary"]
    assert summary["interpreted"] > 0
    assert_problem(upload(client, b"a,b\n1,2\n", "no-such-mapping"), 422)  # not a name: read as JSON, refused


# --- issue 14 item 6: nothing a file says is dropped ----------------------------------------------

from tests.batch.encoded_files import id_only_file, utf16_file, windows_1252_file  # noqa: E402


def test_a_utf16_upload_answers_422_naming_file_save_it_as_csv_utf8(client, tmp_path):
    response = upload(client, utf16_file(tmp_path).read_bytes(), filename="cbc-unicode-text.csv")
    body = assert_problem(response, 422)
    assert response.mimetype == "application/problem+json"
    assert set(body["errors"]) == {"file"}
    assert "UTF-16" in body["errors"]["file"][0] and "save it as CSV UTF-8" in body["errors"]["file"][0]
    assert "save it as CSV UTF-8" in body["detail"]
    assert batch_dirs(tmp_path / "batches") == []


def test_a_windows_1252_upload_reads_its_header_units_and_says_the_encoding(client, tmp_path):
    body = created(upload(client, windows_1252_file(tmp_path).read_bytes()))
    summary = client.get(body["links"]["self"]).get_json()["summary"]
    assert summary["encoding"] == "cp1252"
    assert any("read as Windows-1252" in warning for warning in summary["warnings"])
    assert summary["columns_used"]["PLT (x10³/µL)"] == "platelets"
    assert (summary["interpreted"], summary["rejected"], summary["stored"]) == (2, 0, 2)
    assert summary["patient_id_warning"] is None  # MRN is the patient column
    # platelets 45 < 150: thrombocytopenia (§4), kept with the patient as 45 ×10⁹/L
    record = client.get("/api/v1/patients/W1252-1/results").get_json()
    [kept] = record["results"]
    assert (kept["values"]["platelets"], kept["values"]["wbc"], kept["values"]["hemoglobin"]) == (45, 2.1, 8.2)
    assert "thrombocytopenia" in kept["findings"]


def test_an_upload_whose_id_is_a_sample_id_says_no_row_reaches_the_worklist(client, tmp_path):
    body = created(upload(client, id_only_file(tmp_path).read_bytes()))
    said = body["warnings"]
    assert len(said) == 1 and "the column `id` was read as a sample id" in said[0]
    assert "will not appear in the worklist; map a patient column" in said[0]
    summary = client.get(body["links"]["self"]).get_json()["summary"]
    assert summary["patient_id_warning"] == said[0] == summary["warnings"][0]
    assert summary["stored"] == 0 and summary["interpreted"] == 2
    # The same file mapped with a patient column: no warning, and its rows are stored.
    mapped = created(upload(client, id_only_file(tmp_path).read_bytes(), mapping={"columns": {"id": "patient_id"}}))
    assert mapped["warnings"] == []
    assert client.get(mapped["links"]["self"]).get_json()["summary"]["stored"] == 2


# ------------------------------------------------------- a spreadsheet the user can open (issue 14 item 5)

#: A `;` file with decimal commas and a byte order mark, as Excel saves "CSV UTF-8" in a German locale, with a
#: line with one field too many. Expected from the rules as WIDE_CSV's rows: E1 female 34 with platelets 99.5
#: (< 150: L, CTCAE 1: < LLN-75) -> thrombocytopenia < 100 -> soon (§9); E2 a field too many -> rejected.
EXCEL_CSV = (
    "\ufeffsample_id;patient_id;sex;age;platelets;hemoglobin\n"
    "E1;MRN-É1;F;34;99,5;13,5\n"
    "E2;MRN-É2;F;34;250;13,5;surplus\n"
).encode("utf-8")


def test_a_semicolon_decimal_comma_upload_with_a_bom_comes_back_the_same_way(client):
    body = created(upload(client, EXCEL_CSV, filename="Blutbild März.csv"))
    assert body["summary"]["bom"] is True and body["summary"]["delimiter"] == ";"
    response = client.get(body["links"]["csv"])
    data = response.get_data()
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\xef\xbb\xbf") == 1
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert [(r["sample_id"], r["patient_id"], r["line"]) for r in rows] == [
        ("E1", "MRN-É1", "2"),
        ("E2", "MRN-É2", "3"),
    ]
    assert rows[0]["platelets (10*9/L)"] == "99,5" and rows[0]["hemoglobin (g/dL)"] == "13,5"
    assert rows[0]["summary"] == "Platelets 99,5 x10^9/L low (CTCAE grade 1). Urgency soon."
    assert rows[0]["findings_text"] == "Thrombocytopenia (platelet count below 150)"
    assert rows[1]["error"] == "line 3: more fields than the header's 6"  # and its ids are kept, above
    disposition = response.headers["Content-Disposition"]
    assert disposition == (
        "attachment; filename=\"Blutbild_Marz.interpreted.csv\"; filename*=UTF-8''Blutbild%20M%C3%A4rz.interpreted.csv"
    )


def test_excel_true_links_to_a_csv_with_a_byte_order_mark(client):
    """`excel=true` (a form field here; a query parameter alike) puts excel=true on the links: the CSV then begins
    with the BOM, its content unchanged; without it the same batch downloads as written (no BOM in, none out)."""
    form = {"file": (io.BytesIO(WIDE_CSV), "cbc.csv"), "excel": "true"}
    response = client.post(BATCHES, data=form, content_type="multipart/form-data")
    body = created(response)
    batch_id = body["batch_id"]
    assert body["links"]["csv"] == f"{BATCHES}/{batch_id}/result.csv?excel=true"
    assert body["links"]["self"] == response.headers["Location"] == f"{BATCHES}/{batch_id}?excel=true"
    assert body["links"]["json"] == f"{BATCHES}/{batch_id}/result.json"
    assert client.get(body["links"]["self"]).get_json()["links"]["csv"] == body["links"]["csv"]
    plain = client.get(f"{BATCHES}/{batch_id}/result.csv")
    excel = client.get(body["links"]["csv"])
    assert not plain.get_data().startswith(b"\xef\xbb\xbf")
    assert excel.get_data() == b"\xef\xbb\xbf" + plain.get_data()
    assert excel.headers["Content-Length"] == str(len(plain.get_data()) + 3)
    assert excel.mimetype == "text/csv" and excel.headers["Content-Disposition"] == plain.headers["Content-Disposition"]
    again = upload(client, WIDE_CSV)  # the same file again, without excel: the same batch, plain links
    assert again.status_code == 200 and again.get_json()["batch_id"] == batch_id
    assert again.get_json()["links"]["csv"] == f"{BATCHES}/{batch_id}/result.csv"


@pytest.mark.parametrize("where", ["query", "form"])
def test_excel_other_than_true_or_false_answers_422_naming_excel(client, batch_app, where):
    form: dict[str, Any] = {"file": (io.BytesIO(WIDE_CSV), "cbc.csv")}
    url = BATCHES + ("?excel=ture" if where == "query" else "")
    if where == "form":
        form["excel"] = "ture"
    response = client.post(url, data=form, content_type="multipart/form-data")
    assert_problem(response, 422)
    assert response.get_json()["errors"] == {"excel": ["Expected true or false."]}
    assert batch_dirs(Path(batch_app.config["BATCH_DIRECTORY"])) == []  # nothing kept
