"""`labservice interpret`, run as a real command: exit codes, files and pipes, options, progress.

Expected values come from clinical-rules.md: platelets 45 ×10^9/L is thrombocytopenia with CTCAE
v5.0 grade 3 (< 50–25, §4); neutrophils 0.4 is below the critical 0.5 (§3) and grade 4 (§4).
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import pytest

from tests.shared_data import MIMIC_LABEVENTS

COMMAND = [sys.executable, "-m", "labservice.cli", "interpret"]
MIMIC = MIMIC_LABEVENTS

GOOD = "Sample ID,Sex,Age,PLT (10^9/L),NEUT# (10^9/L),HGB (g/dL)\nS1,F,40,45,3.0,13.5\nS2,M,50,250,0.4,14.5\n"
SOME_BAD = GOOD + "S3,F,30,abc,3.0,13.0\n"


def run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], input=stdin, capture_output=True, text=True, timeout=120)


def rows_of(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


def test_every_row_interpreted_exits_0_and_writes_the_csv(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(GOOD, encoding="utf-8")
    target = tmp_path / "out.csv"
    done = run([str(source), "-o", str(target)])
    assert done.returncode == 0, done.stderr
    rows = rows_of(target.read_text(encoding="utf-8"))
    assert [r["Sample ID"] for r in rows] == ["S1", "S2"]
    assert rows[0]["platelets_flag"] == "L" and rows[0]["platelets_ctcae_grade"] == "3"
    assert "thrombocytopenia" in rows[0]["findings"].split(";")
    assert rows[1]["neutrophils_flag"] == "LL" and rows[1]["neutrophils_ctcae_grade"] == "4"
    assert {"neutropenia", "critical_value"} <= set(rows[1]["findings"].split(";"))
    assert "2 interpreted, 0 rejected" in done.stderr


def test_some_rows_rejected_exits_1_with_the_summary_on_stderr(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(SOME_BAD, encoding="utf-8")
    done = run([str(source), "-o", str(tmp_path / "out.csv")])
    assert done.returncode == 1
    assert "2 interpreted, 1 rejected" in done.stderr
    assert "line 4, column PLT (10^9/L): 'abc' is not a number" in done.stderr
    rows = rows_of((tmp_path / "out.csv").read_text(encoding="utf-8"))
    assert len(rows) == 3 and rows[2]["error"].startswith("line 4, column PLT")
    assert rows[2]["urgency"] == ""


def test_unusable_file_exits_2_and_leaves_no_output(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("Name,Ward\nA,B\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    done = run([str(source), "-o", str(target)])
    assert done.returncode == 2
    assert "no column holds a CBC analyte" in done.stderr
    assert not target.exists()
    assert list(tmp_path.glob(".labservice-*")) == []


def test_unknown_header_unit_exits_2_naming_the_column(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("PLT (furlongs),HGB\n45,13\n", encoding="utf-8")
    done = run([str(source), "-o", str(tmp_path / "out.csv")])
    assert done.returncode == 2
    assert "column 'PLT (furlongs)'" in done.stderr and "unknown unit 'furlongs'" in done.stderr


def test_missing_input_exits_2(tmp_path):
    done = run([str(tmp_path / "nope.csv"), "-o", str(tmp_path / "out.csv")])
    assert done.returncode == 2
    assert "cannot read" in done.stderr


def test_stdin_to_stdout():
    done = run(["-", "-o", "-"], stdin=GOOD)
    assert done.returncode == 0, done.stderr
    assert [r["Sample ID"] for r in rows_of(done.stdout)] == ["S1", "S2"]


def test_json_output_chosen_by_extension(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(SOME_BAD, encoding="utf-8")
    target = tmp_path / "out.json"
    done = run([str(source), "-o", str(target)])
    assert done.returncode == 1
    rows = json.loads(target.read_text(encoding="utf-8"))
    assert [r["ids"]["Sample ID"] for r in rows] == ["S1", "S2", "S3"]
    assert rows[0]["flags"]["platelets"] == "L" and rows[0]["ctcae_grades"]["platelets"] == 3
    assert "thrombocytopenia" in rows[0]["findings"]
    assert rows[2]["error"].startswith("line 4") and rows[2]["urgency"] is None


def test_explicit_column_unit_and_sex_code_options(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("Probe;Geschlecht;Thrombozyten;Hb\nP1;0;45000;82\n", encoding="utf-8")
    done = run(
        [
            str(source),
            "-o",
            "-",
            "--column",
            "Probe=sample_id",
            "--column",
            "Geschlecht=sex",
            "--column",
            "Thrombozyten=platelets",
            "--unit",
            "platelets=/uL",
            "--unit",
            "hemoglobin=g/L",
            "--sex-codes",
            "0=female,1=male",
        ]
    )
    assert done.returncode == 0, done.stderr
    row = rows_of(done.stdout, delimiter=";")[0]  # written back in the input's dialect (issue 14 item 5)
    assert row["Probe"] == "P1"
    # 45000 /uL = 45 ×10^9/L (§1): grade 3; Hb 82 g/L = 8.2 g/dL, below 12.0 for a woman (§4), grade 2 (< 10.0–8.0)
    assert row["platelets_ctcae_grade"] == "3"
    assert row["hemoglobin_flag"] == "L" and row["hemoglobin_ctcae_grade"] == "2"
    # The values used, in canonical units (§1); the file has no decimal commas, so "." stays.
    assert row["platelets (10*9/L)"] == "45" and row["hemoglobin (g/dL)"] == "8.2"


def test_excel_writes_a_byte_order_mark(tmp_path):
    """Issue 14 item 5: `--excel` begins the CSV with the UTF-8 BOM (Excel then reads é as é); without it, a file
    without a BOM gives one without, and a file with one gives one with."""
    source = tmp_path / "in.csv"
    source.write_text(GOOD.replace("S1", "Séverine"), encoding="utf-8")
    plain, excel = tmp_path / "plain.csv", tmp_path / "excel.csv"
    assert run([str(source), "-o", str(plain)]).returncode == 0
    assert run([str(source), "-o", str(excel), "--excel"]).returncode == 0
    assert excel.read_bytes() == b"\xef\xbb\xbf" + plain.read_bytes()
    assert "Séverine" in plain.read_text(encoding="utf-8")
    with_bom = tmp_path / "bom.csv"
    with_bom.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    assert run([str(with_bom), "-o", str(tmp_path / "back.csv")]).returncode == 0
    assert (tmp_path / "back.csv").read_bytes() == excel.read_bytes()


def test_a_row_with_an_extra_field_keeps_its_ids(tmp_path):
    """Issue 14 item 5: the rejected line keeps its sample id (it used to come out with empty id columns)."""
    source = tmp_path / "in.csv"
    source.write_text(GOOD + "S3,F,30,45,3.0,13.0,SEE NOTE\nS4,M,60,45,3.0,13.0,SEE,NOTE\n", encoding="utf-8")
    done = run([str(source), "-o", "-"])
    assert done.returncode == 1
    rows = rows_of(done.stdout)
    assert [(r["Sample ID"], r["line"]) for r in rows] == [("S1", "2"), ("S2", "3"), ("S3", "4"), ("S4", "5")]
    assert rows[2]["error"] == "line 4: more fields than the header's 6"
    assert rows[3]["error"] == "line 5: more fields than the header's 6"


def test_progress_bar_on_request(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(GOOD, encoding="utf-8")
    done = run([str(source), "-o", str(tmp_path / "out.csv"), "--progress", "--quiet"])
    assert done.returncode == 0
    assert "100%" in done.stderr and "MB" in done.stderr


def test_the_progress_bar_moves_per_chunk_on_a_file_smaller_than_one_chunk(tmp_path):
    """Issue 12 item 1: the CLI's bar is updated per chunk; it used to jump from 0 to 100 % on a file under one chunk
    (100,000 rows). With a bar the file is read in at least PROGRESS_STEPS chunks, and the bar follows the rows."""
    from labservice.batch.progress import PROGRESS_STEPS

    rows = [f"S{i},{20 + i % 400},{6 + i % 10},{0.2 + (i % 30) / 10}" for i in range(6000)]
    lines = ["Sample ID,PLT,HGB,NEUT#", *rows]
    source = tmp_path / "in.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = run([str(source), "-o", str(tmp_path / "out.csv"), "--progress", "--quiet"])
    assert done.returncode == 0, done.stderr
    shown = [int(p) for p in re.findall(r"\]\s*(\d+)%", done.stderr)]
    assert shown == sorted(shown) and shown[-1] == 100
    between = [p for p in shown if 0 < p < 100]
    assert len(set(between)) >= PROGRESS_STEPS // 2, shown  # it moves, chunk after chunk
    with_bar = (tmp_path / "out.csv").read_bytes()
    assert run([str(source), "-o", str(tmp_path / "plain.csv"), "--quiet"]).returncode == 0
    assert (tmp_path / "plain.csv").read_bytes() == with_bar  # the chunk size does not change the output


def test_worker_processes_give_the_same_file_as_one_process(tmp_path):
    lines = ["Sample ID,PLT,HGB,NEUT#"]
    lines += [f"S{i},{20 + i % 400},{6 + i % 10},{0.2 + (i % 30) / 10}" for i in range(2500)]
    lines.insert(700, "broken,1,2,3,4,5")
    source = tmp_path / "in.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outputs = []
    for jobs in ("1", "2"):
        target = tmp_path / f"out{jobs}.csv"
        done = run([str(source), "-o", str(target), "--jobs", jobs, "--chunk-rows", "300"])
        assert done.returncode == 1, done.stderr
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]
    rows = rows_of(outputs[0].decode())
    assert len(rows) == 2501
    assert rows[699]["error"] == "line 701: more fields than the header's 4"


@pytest.mark.skipif(not MIMIC.exists(), reason="MIMIC-III demo fixture not present")
def test_builtin_mimic_mapping(tmp_path):
    # MIMIC-III Clinical Database Demo v1.4 (PhysioNet, MIT-LCP), ODbL 1.0: see ../shared/fixtures.
    target = tmp_path / "mimic.csv"
    summary = tmp_path / "summary.json"
    done = run([str(MIMIC), "-o", str(target), "--mapping", "mimic-iii-labevents", "--summary", str(summary)])
    assert done.returncode == 1  # some values are not numbers (UNABLE TO REPORT, COMPUTER NETWORK FAILURE)
    counts = json.loads(summary.read_text(encoding="utf-8"))
    rows = rows_of(target.read_text(encoding="utf-8"))
    assert len(rows) == counts["rows_out"] == counts["interpreted"] + counts["rejected"]
    assert counts["rows_in"] == 76074


#: MIMIC-III items of the differential and the film (clinical-rules §10 v2) and the CBC items the
#: built-in mapping reads as numbers (labservice/batch/mappings/mimic-iii-labevents.json).
MIMIC_BLASTS, MIMIC_SCHISTOCYTES, MIMIC_PLT, MIMIC_HGB = "51148", "51287", "51265", "51222"
MIMIC_NUMERIC_ITEMS = {
    "51265",
    "51301",
    "51300",
    "51133",
    "51222",
    "51221",
    "51279",
    "51250",
    "51248",
    "51249",
    "51277",
    "51256",
    "51283",
    "51148",
    "51144",
    "51269",
    "51255",
    "51251",
    "51257",
}


def mimic_groups() -> dict[tuple[str, str], dict[str, list[str]]]:
    """(HADM_ID, CHARTTIME) -> item -> the VALUEs sent, read with the csv module (rows without HADM_ID are
    one CBC per CHARTTIME, HADM_ID "")."""
    groups: dict[tuple[str, str], dict[str, list[str]]] = {}
    with MIMIC.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            groups.setdefault((row["HADM_ID"], row["CHARTTIME"]), {}).setdefault(row["ITEMID"], []).append(row["VALUE"])
    return groups


def readable(items: dict[str, list[str]]) -> bool:
    """Every numeric item a number, sent once or with one value (otherwise the CBC is an error row)."""
    for item, values in items.items():
        if item not in MIMIC_NUMERIC_ITEMS:
            continue
        try:
            numbers = {float(v) for v in values}
        except ValueError:
            return False
        if len(numbers) > 1:
            return False
    return True


@pytest.mark.skipif(not MIMIC.exists(), reason="MIMIC-III demo fixture not present")
def test_builtin_mimic_mapping_reports_blasts_and_schistocytes(tmp_path):
    """clinical-rules §10 v2 and issue 13: the MIMIC-III demo through the CLI reports blasts (item 51148,
    blasts > 0 %: blasts_reported) and schistocytes (item 51287, OCCASIONAL / 1+ = present: the film
    column; with platelets < 150 and haemoglobin below every WHO cut-off of §4 (< 10.5 g/dL), the
    thrombotic-microangiopathy pattern) wherever the file has them on a CBC that can be read."""
    # MIMIC-III Clinical Database Demo v1.4 (PhysioNet, MIT-LCP), ODbL 1.0: see ../shared/fixtures.
    target = tmp_path / "mimic.csv"
    done = run([str(MIMIC), "-o", str(target), "--mapping", "mimic-iii-labevents"])
    assert done.returncode == 1  # some values are not numbers
    rows = {(r["HADM_ID"], r["CHARTTIME"]): r for r in rows_of(target.read_text(encoding="utf-8"))}
    blasts_seen = schistocytes_seen = patterns = 0
    for key, items in mimic_groups().items():
        if not readable(items) or key not in rows:
            continue
        row = rows[key]
        assert not row["error"], (key, row["error"])
        findings = set(row["findings"].split(";"))
        blasts = [float(v) for v in items.get(MIMIC_BLASTS, [])]
        if blasts:
            assert ("blasts_reported" in findings) is (blasts[0] > 0), key
            assert (row["aplastic_anemia"] == "not_applicable") or blasts[0] == 0, key
            blasts_seen += blasts[0] > 0
        grades = items.get(MIMIC_SCHISTOCYTES, [])
        if grades:
            assert grades[0] in ("OCCASIONAL", "1+")
            assert row["film"] == "schistocytes present", key
            schistocytes_seen += 1
            plt = [float(v) for v in items.get(MIMIC_PLT, [])]
            hgb = [float(v) for v in items.get(MIMIC_HGB, [])]
            if plt and hgb and plt[0] < 150 and hgb[0] < 10.5:
                assert "thrombotic_microangiopathy_pattern" in findings, key
                patterns += 1
            if plt and plt[0] >= 150:
                assert "thrombotic_microangiopathy_pattern" not in findings, key
        else:
            assert "thrombotic_microangiopathy_pattern" not in findings, key
    # The file has them (counted from the raw CSV above): the test must have checked some of each.
    assert blasts_seen and schistocytes_seen and patterns


@pytest.mark.skipif(not MIMIC.exists(), reason="MIMIC-III demo fixture not present")
def test_the_issues_mimic_cbc_of_2105_05_13_without_hadm_id_reads_as_blasts_not_aplasia(tmp_path):
    """Issue 13's first example: MIMIC 2105-05-13 08:30 (a row group with no HADM_ID): WBC 35.9, platelets 14,
    Hb 8.9, 17 % blasts and schistocytes OCCASIONAL, through the CLI with the built-in mapping. The rules:
    blasts > 0 % -> blasts_reported (§10 v2); platelets < 150, anaemia (Hb 8.9 below the lowest cut-off that
    could apply, 12.0, sex unknown, §4 v2) and schistocytes present -> thrombotic_microangiopathy_pattern (§10);
    platelets < 20 and WBC > 30 -> critical_value (§3); both patterns and a new critical value ask for
    `immediate` (§9 v2); blasts (and a WBC above its range) make the aplastic-anaemia assessment
    not_applicable (§6 v2); lymphocytes from item 51244 (7 %) x WBC = 2.513, inside 1.0-3.0 (§1 v2, §2)."""
    # MIMIC-III Clinical Database Demo v1.4 (PhysioNet, MIT-LCP), ODbL 1.0: see ../shared/fixtures.
    items = mimic_groups()[("", "2105-05-13 08:30:00")]
    assert (items["51301"], items[MIMIC_PLT], items[MIMIC_HGB]) == (["35.9"], ["14"], ["8.9"])
    assert (items[MIMIC_BLASTS], items[MIMIC_SCHISTOCYTES], items["51244"]) == (["17"], ["OCCASIONAL"], ["7"])
    target = tmp_path / "mimic.csv"
    run([str(MIMIC), "-o", str(target), "--mapping", "mimic-iii-labevents"])
    [row] = [
        r
        for r in rows_of(target.read_text(encoding="utf-8"))
        if (r["HADM_ID"], r["CHARTTIME"]) == ("", "2105-05-13 08:30:00")
    ]
    assert not row["error"], row["error"]
    findings = set(row["findings"].split(";"))
    assert {"blasts_reported", "thrombotic_microangiopathy_pattern", "critical_value"} <= findings
    assert row["urgency"] == "immediate"
    assert row["aplastic_anemia"] == "not_applicable"
    assert row["film"] == "schistocytes present"
    assert (row["platelets_flag"], row["wbc_flag"], row["lymphocytes_flag"]) == ("LL", "HH", "N")
    assert "lymphocytes derived from a percentage (not measured)" in row["notes"]
    assert "grouped into one CBC by collection time (CHARTTIME) alone" in row["notes"]


# --- issue 14 item 6: what the file says, said by the command line too --------------------------------


def test_a_utf16_file_exits_2_saying_save_it_as_csv_utf8(tmp_path):
    from tests.batch.encoded_files import utf16_file

    done = run([str(utf16_file(tmp_path)), "-o", str(tmp_path / "out.csv")])
    assert done.returncode == 2
    assert "UTF-16" in done.stderr and "save it as CSV UTF-8" in done.stderr
    assert not (tmp_path / "out.csv").exists()


def test_a_windows_1252_file_is_read_and_the_encoding_said(tmp_path):
    from tests.batch.encoded_files import windows_1252_file

    summary_path = tmp_path / "summary.json"
    done = run([str(windows_1252_file(tmp_path)), "-o", str(tmp_path / "out.csv"), "--summary", str(summary_path)])
    assert done.returncode == 0, done.stderr
    assert "warning: the file is not UTF-8 (byte 0xB3" in done.stderr and "read as Windows-1252" in done.stderr
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["encoding"] == "cp1252" and summary["columns_used"]["PLT (x10³/µL)"] == "platelets"
    rows = rows_of((tmp_path / "out.csv").read_text(encoding="utf-8"), summary["delimiter"])  # the input's dialect
    assert rows[0]["platelets_flag"] == "L" and rows[0]["platelets_ctcae_grade"] == "3"  # 45: §4 grade 3


def test_a_file_whose_id_is_a_sample_id_is_warned_about(tmp_path):
    from tests.batch.encoded_files import id_only_file

    summary_path = tmp_path / "summary.json"
    done = run([str(id_only_file(tmp_path)), "-o", str(tmp_path / "out.csv"), "--summary", str(summary_path)])
    assert done.returncode == 1  # one row ("abc" platelets) is rejected
    assert "warning: No column holds a patient id: the column `id` was read as a sample id" in done.stderr
    assert "--column id=patient_id" in done.stderr
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert "will not appear in the worklist" in summary["patient_id_warning"]
    mapped = run([str(id_only_file(tmp_path)), "-o", str(tmp_path / "out.csv"), "--column", "id=patient_id"])
    assert "No column holds a patient id" not in mapped.stderr


@pytest.mark.parametrize(
    ("cores", "load", "jobs"),
    [
        (2, 0.2, 2),  # a quiet machine: two workers beside the reading process
        (2, 1.4, 2),
        (2, 1.5, 1),  # the load is the cores less one half: a worker would find no free core
        (2, 15.0, 1),
        (8, 3.0, 2),  # never more than two
        (1, 0.0, 1),  # one core
    ],
)
def test_default_jobs_follow_the_free_cores(monkeypatch, cores: int, load: float, jobs: int) -> None:
    from labservice import cli

    monkeypatch.setattr(cli.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (load, load, load))
    assert cli.default_jobs() == jobs
