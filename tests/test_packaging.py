"""Installed from a wheel the service must still find everything it reads: the rule tables ship
inside the package as `labservice.reference_ranges`, found through one resolver with `importlib.resources`;
the instance folder is configurable; the service reports its version. The full install-and-run check from a
directory outside the checkout is `.ci/wheel_smoke.py` (a fresh venv, the built wheel, serve, mllp)."""

from __future__ import annotations

import ast
import email
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata, resources
from pathlib import Path

import pytest

import labservice
from labservice.app import create_app
from labservice.cli import main
from labservice.config import instance_path, load_settings
from labservice.core.ruleset import load_ruleset
from labservice.rule_tables import PACKAGE, packaged_directory

ROOT = Path(__file__).resolve().parents[1]
TABLES = (
    "analytes.csv",
    "adults.csv",
    "children.csv",
    "thresholds.csv",
    "ctcae.csv",
    "bands.csv",
    "units.csv",
    "anemia_cutoffs.csv",
    "duffy_null.csv",
    "sources.csv",
    "snomed_ct.csv",
    "hl7_local_codes.csv",
    "urgency_actions.csv",
    "README.md",
)


def test_the_rule_tables_are_a_package_resource_found_by_importlib_resources():
    directory = packaged_directory()
    assert directory == Path(str(resources.files(PACKAGE)))
    assert all((directory / name).is_file() for name in TABLES)


def test_an_editable_checkout_reads_the_reviewable_top_level_directory():
    assert packaged_directory().resolve() == (ROOT / "reference_ranges").resolve()


def test_the_default_setting_is_the_packaged_directory_and_the_variable_still_overrides_it(tmp_path):
    assert load_settings({})["REFERENCE_RANGES"] == str(packaged_directory())
    assert load_settings({"LABSERVICE_REFERENCE_RANGES": str(tmp_path)})["REFERENCE_RANGES"] == str(tmp_path)
    assert load_ruleset().directory == packaged_directory()


def _builds_a_path_to_the_tables(path: Path) -> bool:
    """`... / "reference_ranges"`, `Path("…reference_ranges")`, `os.path.join(..., "reference_ranges")` and the like
    (the word in a message or a JSON key is not a path)."""

    def names_tables(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and "reference_ranges" in node.value

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Div)
            and (names_tables(node.left) or names_tables(node.right))
        ):
            return True
        if isinstance(node, ast.Call) and any(names_tables(arg) for arg in node.args):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in ("Path", "PurePath", "join", "joinpath", "files", "open"):
                return True
    return False


def test_no_module_but_the_resolver_builds_a_path_to_the_rule_tables():
    """A path built from a module's own location (parents[2] / "reference_ranges") works only in a checkout."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "labservice").rglob("*.py"))
        if path.name != "rule_tables.py" and _builds_a_path_to_the_tables(path)
    ]
    assert offenders == []


def test_version_flag_prints_the_installed_distribution_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"labservice {metadata.version('labservice')}"
    assert labservice.__version__ == metadata.version("labservice")


@pytest.mark.slow
def test_the_wheel_carries_the_rule_tables_licence_and_metadata(tmp_path):
    """Build the wheel (no dependencies: a few seconds) from a copy of the sources and read what it holds."""
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "instance", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("labservice-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(name for name in names if name.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(archive.read(info))
    assert {f"labservice/reference_ranges/{name}" for name in TABLES} <= names
    assert "labservice/store/migrations/versions/0001_initial.py" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in names)
    assert not any(name.startswith(("tests/", "reference_ranges/", "bench/")) for name in names)
    assert meta["Version"] == labservice.__version__
    assert meta.get_all("Classifier") and meta.get_all("Project-URL")
    assert {"test", "lint"} <= set(meta.get_all("Provides-Extra"))


def test_the_instance_folder_defaults_to_instance_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert instance_path({}) == tmp_path / "instance"


def test_the_instance_folder_is_configurable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert instance_path({"INSTANCE_PATH": "data"}) == tmp_path / "data"  # relative: to the working directory
    assert instance_path(load_settings({"LABSERVICE_INSTANCE_PATH": str(tmp_path / "srv")})) == tmp_path / "srv"


def test_the_app_and_the_commands_share_the_configured_instance_folder(tmp_path, monkeypatch, capsys):
    """create-key writes the key into the database the server reads (both: <instance>/labservice.sqlite)."""
    folder = tmp_path / "state"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABSERVICE_INSTANCE_PATH", str(folder))
    for name in ("LABSERVICE_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["create-key", "--name", "packaging-test", "--scopes", "read"]) == 0
    token = capsys.readouterr().out.strip()
    assert (folder / "labservice.sqlite").is_file()
    app = create_app({"TESTING": True})
    assert app.instance_path == str(folder)
    assert app.config["DATABASE_URL"] == f"sqlite:///{folder / 'labservice.sqlite'}"
    response = app.test_client().get("/api/v1/ruleset", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert not (tmp_path / "instance").exists()


def test_serve_runs_gunicorn_with_the_packaged_settings_module_not_a_file_in_the_working_directory(monkeypatch):
    """gunicorn reads ./gunicorn.conf.py only from a checkout; a wheel user has none, so serve names the module."""
    called: list[list[str]] = []
    monkeypatch.setattr("os.execv", lambda executable, argv: called.append(argv))
    assert main(["serve", "--bind", "127.0.0.1:8123", "--workers", "3"]) == 0
    (argv,) = called
    # Issue 12 item 4: serve runs the buffering front on the address, gunicorn behind it (after "--").
    front, gunicorn = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    assert front[1:3] == ["-m", "labservice.serving.front"] and front[front.index("--bind") + 1] == "127.0.0.1:8123"
    assert gunicorn[gunicorn.index("-c") + 1] == "python:labservice.serving.gunicorn_conf"
    assert gunicorn[gunicorn.index("-w") + 1] == "3" and "-b" not in gunicorn
    assert gunicorn[-1] == "labservice.app:create_app()"
