#!/usr/bin/env python3
"""Developer tasks with nothing but Python 3.11: `python3 tasks.py run`, `test`, `lint`, `bench` or `fuzz`.

Each creates `.venv` when it is missing, installs the project with its test and lint extras (skipped while
the stamp file holds the current hash of pyproject.toml and setup.py) and create `instance/`. Then `run`
runs the buffering front on 127.0.0.1:8000 with gunicorn (2 workers) behind it and the batch job worker beside
it (first saying how to make an API key and a dashboard
user when the database has none), and `test` runs pytest with any further arguments and exits with its code.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".labservice-install.sha256"
PYPROJECT = ROOT / "pyproject.toml"
INSTANCE = ROOT / "instance"
BIND = "127.0.0.1:8000"
WORKERS = "2"
EXTRAS = "test,lint,distributed"  # installed into .venv: what the tests and the lint need (the cluster tests: dask)
USAGE = "usage: python3 tasks.py run | test [pytest arguments] | lint | bench [--smoke] | fuzz [.ci/fuzz.py arguments]"


def say(message: str) -> None:
    print(f"tasks.py: {message}", file=sys.stderr, flush=True)


def ensure_venv() -> None:
    if PYTHON.exists():
        return
    say(f"creating {VENV.relative_to(ROOT)}")
    venv.EnvBuilder(with_pip=True).create(VENV)


def pyproject_hash() -> str:
    """Hash of what the install depends on: pyproject.toml, setup.py (which lists the packages) and the extras."""
    return hashlib.sha256(PYPROJECT.read_bytes() + (ROOT / "setup.py").read_bytes() + EXTRAS.encode()).hexdigest()


def ensure_installed() -> None:
    """pip install -e '.[EXTRAS]' unless the stamp says this pyproject.toml and setup.py are already installed."""
    wanted = pyproject_hash()
    if STAMP.exists() and STAMP.read_text(encoding="utf-8").strip() == wanted:
        return
    say("installing the project and its test and lint dependencies into .venv")
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-e", f".[{EXTRAS}]"], cwd=ROOT, check=True
    )
    STAMP.write_text(wanted + "\n", encoding="utf-8")


def setup() -> None:
    ensure_venv()
    ensure_installed()
    INSTANCE.mkdir(exist_ok=True)
    os.chdir(ROOT)


def run() -> None:
    setup()
    # On a fresh machine: say how to make the first API key and dashboard user (nothing works without them).
    subprocess.run(
        [str(PYTHON), "-c", "from labservice.cli import print_credentials_hint; print_credentials_hint()"],
        cwd=ROOT,
        check=False,
    )
    # The buffering front (labservice/serving/front.py) on BIND, gunicorn behind it on a private socket: slow
    # clients cannot hold a worker and overload is refused by queue time (503 + Retry-After). Beside it the batch
    # job worker (labservice worker), with the same runner as `labservice serve`: both stop when either ends.
    argv = [
        str(PYTHON),
        "-m",
        "labservice.serving.front",
        "--bind",
        BIND,
        "--",
        str(BIN / "gunicorn"),
        "-w",
        WORKERS,
        "wsgi:app",
    ]
    say(" ".join(argv[1:]) + ", and beside it the batch job worker (labservice worker)")
    code = subprocess.run(
        [
            str(PYTHON),
            "-c",
            "import sys; from labservice.cli import run_beside; "
            "sys.exit(run_beside(sys.argv[1:-1], [sys.executable, '-m', 'labservice.cli', "
            "sys.argv[-1]]))",
            *argv,
            "worker",
        ],
        cwd=ROOT,
        check=False,
    ).returncode
    sys.exit(code)


def test(pytest_args: list[str]) -> int:
    setup()
    return subprocess.run([str(PYTHON), "-m", "pytest", *pytest_args], cwd=ROOT, check=False).returncode


def lint() -> int:
    """ruff check and ruff format --check on the code, its tests and benchmarks; mypy on labservice/: each runs,
    the exit code is the worst."""
    setup()
    code = ["labservice", "tests", "bench", "wsgi.py", "tasks.py", "gunicorn.conf.py"]
    checks = [
        [str(BIN / "ruff"), "check", *code],
        [str(BIN / "ruff"), "format", "--check", *code],
        [str(PYTHON), "-m", "mypy", "labservice"],
    ]
    worst = 0
    for argv in checks:
        say(" ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv)))
        worst = max(worst, subprocess.run(argv, cwd=ROOT, check=False).returncode)
    return worst


def bench(args: list[str]) -> int:
    """Run the benchmarks in bench/ (they print tables); --smoke runs them at a tiny size, as CI does."""
    setup()
    smoke = "--smoke" in args
    runs = [
        ["bench/engine.py", *(["--sizes", "1000,10000", "--calls", "200"] if smoke else [])],
        ["bench/api.py", *(["--seconds", "1"] if smoke else [])],
        ["bench/batch.py", *(["--smoke"] if smoke else [])],
        ["bench/dashboard.py", *(["--smoke"] if smoke else [])],
        ["bench/result_pages.py", *(["--smoke"] if smoke else [])],
        ["bench/interop.py", *(["--smoke"] if smoke else [])],
        ["bench/load.py", *(["--smoke"] if smoke else [])],
        ["bench/distributed.py", *(["--smoke"] if smoke else [])],
    ]
    # Benchmarks measure capacity: no rate limit (labservice/middleware/ratelimit.py) unless one is set.
    env = {**os.environ}
    for name in ("LABSERVICE_RATE_LIMIT", "LABSERVICE_RATE_LIMIT_UPLOADS"):
        env.setdefault(name, "off")
    for script in runs:
        code = subprocess.run([str(PYTHON), *script], cwd=ROOT, env=env, check=False).returncode
        if code:
            return code
    return 0


def fuzz(args: list[str]) -> int:
    """schemathesis against a real gunicorn, authenticated and not (.ci/fuzz.py; CI runs it as it is)."""
    setup()
    return subprocess.run([str(PYTHON), ".ci/fuzz.py", *args], cwd=ROOT, check=False).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "lint", "bench", "fuzz"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if argv[0] == "run":
            run()
            return 0  # not reached: run() execs gunicorn
        if argv[0] == "bench":
            return bench(argv[1:])
        if argv[0] == "fuzz":
            return fuzz(argv[1:])
        if argv[0] == "lint":
            return lint()
        return test(argv[1:])
    except subprocess.CalledProcessError as error:
        say(f"failed: {' '.join(map(str, error.cmd))} (exit {error.returncode})")
        return error.returncode or 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
