"""`labservice interpret` on the Parquet path: what it refuses (exit 2, saying why) and what it needs installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from labservice.cli import main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def wide_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "cbcs.parquet"
    pd.DataFrame({"patient_id": ["A", "B"], "platelets": [250.0, 100.0], "wbc": [6.0, 7.0]}).to_parquet(path)
    return path


def test_without_the_extra_it_says_what_to_install(wide_parquet: Path, tmp_path: Path) -> None:
    # The extra's modules hidden from this interpreter (an entry of None in sys.modules makes an import fail).
    script = (
        "import sys\n"
        "for name in ('dask', 'distributed', 'pyarrow'):\n"
        "    sys.modules[name] = None\n"
        "from labservice.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = [sys.executable, "-c", script, "interpret", str(wide_parquet), "-o", str(tmp_path / "out")]
    done = subprocess.run([*argv, "--cluster", "local:2"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert "pip install 'labservice[distributed]'" in done.stderr
    assert "dask" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_csv_input_on_a_cluster_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "cbcs.csv"
    source.write_text("platelets,wbc\n250,6.0\n", encoding="utf-8")
    assert main(["interpret", str(source), "-o", str(tmp_path / "out"), "--cluster", "local:2"]) == 2
    assert "reads Parquet" in capsys.readouterr().err


def test_a_cluster_spec_it_cannot_read_is_refused(wide_parquet: Path, tmp_path: Path, capsys) -> None:
    assert main(["interpret", str(wide_parquet), "-o", str(tmp_path / "out"), "--cluster", "yarn:4"]) == 2
    assert "expected local, local:N or local[N]" in capsys.readouterr().err


def test_csv_output_from_parquet_is_refused(wide_parquet: Path, tmp_path: Path, capsys) -> None:
    assert main(["interpret", str(wide_parquet), "-o", str(tmp_path / "out.csv")]) == 2
    assert "give -o a directory" in capsys.readouterr().err


def test_an_output_directory_that_holds_files_is_not_overwritten(wide_parquet: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    assert main(["interpret", str(wide_parquet), "-o", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_in_one_process_every_row_is_written(wide_parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["interpret", str(wide_parquet), "-o", str(out), "-q"]) == 0
    rows = pd.read_parquet(out).sort_values("source_row")
    assert rows["patient_id"].tolist() == ["A", "B"]
    assert rows["platelets_flag"].tolist() == ["N", "L"]  # clinical-rules §2: 150-410; 100 is low
    assert not list(tmp_path.glob(".labservice-*"))


def test_a_csv_file_whose_name_holds_glob_characters_is_read_as_csv(tmp_path: Path) -> None:
    source = tmp_path / "results[1].csv"
    source.write_text("platelets,wbc\n250,6.0\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["interpret", str(source), "-o", str(out), "-q"]) == 0
    assert out.read_text(encoding="utf-8").count("\n") == 2  # the header and the one CBC


def test_the_summary_names_the_input_by_its_sha256(wide_parquet: Path, tmp_path: Path) -> None:
    """As the CSV path's summary does: one file's SHA-256 is that of its bytes; for a directory of files, of one line
    per file, `name NUL its SHA-256`, in input order."""
    import hashlib
    import json

    one = tmp_path / "one.json"
    assert main(["interpret", str(wide_parquet), "-o", str(tmp_path / "out1"), "-q", "--summary", str(one)]) == 0
    assert json.loads(one.read_text())["content_sha256"] == hashlib.sha256(wide_parquet.read_bytes()).hexdigest()

    folder = tmp_path / "parts"
    folder.mkdir()
    for name, ids in (("a.parquet", ["A"]), ("b.parquet", ["B"])):
        pd.DataFrame({"patient_id": ids, "platelets": [250.0], "wbc": [6.0]}).to_parquet(folder / name)
    both = tmp_path / "both.json"
    assert main(["interpret", str(folder), "-o", str(tmp_path / "out2"), "-q", "--summary", str(both)]) == 0
    manifest = "".join(
        f"{name}\0{hashlib.sha256((folder / name).read_bytes()).hexdigest()}\n" for name in ("a.parquet", "b.parquet")
    )
    assert json.loads(both.read_text())["content_sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
