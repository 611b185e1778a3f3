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
        capture_output=True, text=True, check=False, cwd=ROOT)
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


def test_serve_defaults():
    args = build_parser().parse_args(["serve"])
    assert (args.bind, args.workers) == ("127.0.0.1:8000", 2)
