"""The `labservice` command: check-ranges on the real tables and on a broken copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from labservice.cli import build_parser, main
from labservice.core.ruleset import load_ruleset

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_RANGES = ROOT / "reference_ranges"


def test_check_ranges_ok_on_the_real_tables(capsys):
    assert main(["check-ranges", str(REFERENCE_RANGES)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ")
    assert load_ruleset(REFERENCE_RANGES).version in out


def test_check_ranges_defaults_to_the_configured_directory(capsys):
    assert main(["check-ranges"]) == 0
    assert capsys.readouterr().out.startswith("OK ")


def test_check_ranges_names_file_and_line_and_exits_1(broken_ranges, capsys):
    directory, where = broken_ranges
    assert main(["check-ranges", str(directory)]) == 1
    captured = capsys.readouterr()
    assert where in captured.err
    assert "OK" not in captured.out


def test_check_ranges_as_a_process(broken_ranges):
    directory, where = broken_ranges
    completed = subprocess.run(
        [sys.executable, "-m", "labservice.cli", "check-ranges", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert completed.returncode == 1
    assert where in completed.stderr


def test_check_ranges_names_the_line_of_a_bad_findings_row(tmp_path, capsys):
    """findings.csv is validated with the other tables: a finding raising an urgency needs a reason code."""
    directory = tmp_path / "reference_ranges"
    shutil.copytree(REFERENCE_RANGES, directory)
    table = directory / "findings.csv"
    lines = table.read_text(encoding="utf-8").splitlines()
    lines.append("new_one,30,finding,counts,soon,,,,,,,New,r,S1")
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["check-ranges", str(directory)]) == 1
    assert f"findings.csv:{len(lines)}: a reason is needed" in capsys.readouterr().err


def _copy_with_row(tmp_path, name: str, row: str) -> tuple[Path, int]:
    directory = tmp_path / "reference_ranges"
    shutil.copytree(REFERENCE_RANGES, directory)
    table = directory / name
    lines = table.read_text(encoding="utf-8").splitlines()
    lines.append(row)
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory, len(lines)


def test_check_ranges_names_the_line_of_a_bad_context_code(tmp_path, capsys):
    """context_codes.csv (the FHIR / HL7 v2 film and context codes) is checked with the rule tables: a code is
    listed once (clinical-rules §10 v2: LOINC 6301-6 is the PLASMIC INR item, already a row of the table)."""
    directory, line = _copy_with_row(
        tmp_path, "context_codes.csv", "context.inr,http://loinc.org,6301-6,exact,INR,no,x"
    )
    assert main(["check-ranges", str(directory)]) == 1
    assert f"context_codes.csv:{line}: http://loinc.org|6301-6 is listed twice" in capsys.readouterr().err


def test_check_ranges_names_the_line_of_a_bad_order_code(tmp_path, capsys):
    """order_codes.csv (CDS Hooks order-sign) is checked with the rule tables: each code belongs to a known group."""
    directory, line = _copy_with_row(tmp_path, "order_codes.csv", "http://snomed.info/sct,1,X,no_such_group,no,x")
    assert main(["check-ranges", str(directory)]) == 1
    assert f"order_codes.csv:{line}" in capsys.readouterr().err


def test_check_ranges_names_a_missing_code_table(tmp_path, capsys):
    directory = tmp_path / "reference_ranges"
    shutil.copytree(REFERENCE_RANGES, directory)
    (directory / "order_codes.csv").unlink()
    assert main(["check-ranges", str(directory)]) == 1
    assert "order_codes.csv" in capsys.readouterr().err


def test_serve_defaults():
    args = build_parser().parse_args(["serve"])
    assert (args.bind, args.workers) == ("127.0.0.1:8000", 2)
