#!/usr/bin/env python3
"""CI: the package as a user installs it. Build the wheel, install it into a fresh venv outside the checkout and run
it from a temporary directory, with no LABSERVICE_* variable and the embedded (SQLite) database:

- `labservice --version` and `labservice check-ranges` (the rule tables shipped in the wheel);
- `labservice interpret` on a small CSV (a count of 45 x 10^9/L platelets is thrombocytopenia, < 150: clinical-rules);
- `labservice create-key`, then `labservice serve` (gunicorn with the packaged settings): /healthz answers with the
  version, and one interpretation with that key answers 200 (401 without it);
- `labservice mllp` answers one ORU^R01 with an ACK AA.

Issue 16: only an editable checkout worked, because the rule tables were read from the checkout. Exits non-zero,
naming the step, on any failure. Uses `python -m build` (sdist, then the wheel from it, so the sdist is checked too)
when `build` installs, else `pip wheel --no-deps`. Takes a minute or two (installing the dependencies).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0
CSV = (
    "id,sex,age,PLT (10^9/L),Hb (g/L),WBC (10^9/L),ANC (10^9/L)\r\n"
    "SMOKE-1,F,34,45,82,2.1,0.4\r\n"
    "SMOKE-2,M,50,250,150,6.0,3.5\r\n"
)
CBC = {
    "patient": {"id": "SMOKE-1", "sex": "female", "age_years": 34},
    "collected_at": "2026-11-20T08:30:00Z",
    "results": {"platelets": {"value": 45, "unit": "10*3/uL"}, "hemoglobin": {"value": 82, "unit": "g/L"}},
}
ORU = (
    "\r".join(
        [
            "MSH|^~\\&|SMOKE|LAB|LABSERVICE|HOSP|20261120083000||ORU^R01|SMOKE-0001|P|2.5.1",
            "PID|1||SMOKE-3^^^HOSP^MR||Doe^Jane||19920101|F",
            "OBR|1||SMOKE-ORDER|58410-2^CBC panel^LN|||20261120083000",
            "OBX|1|NM|777-3^Platelets^LN||45|10*3/uL|150-410|L|||F",
        ]
    )
    + "\r"
)


def say(message: str) -> None:
    print(f"wheel_smoke: {message}", flush=True)


def fail(message: str) -> NoReturn:
    say(f"FAILED: {message}")
    sys.exit(1)


def run(
    argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(argv, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, check=False)
    if check and completed.returncode != 0:
        fail(f"{' '.join(map(str, argv))} exited {completed.returncode}\n{completed.stdout}\n{completed.stderr}")
    return completed


def bin_of(environment: Path, name: str) -> str:
    return str(environment / ("Scripts" if os.name == "nt" else "bin") / name)


#: Not sources: left out of the copy the wheel is built from.
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    "instance",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".screenshots",
)


def source_copy(target: Path) -> Path:
    """The checkout's sources copied to `target`: the build then leaves nothing in the checkout, and a stale
    build/ there (pip wheel builds in the tree) cannot put files that no longer exist into the wheel."""
    shutil.copytree(ROOT, target, ignore=NOT_SOURCES)
    return target


def build_wheel(work: Path) -> Path:
    """The wheel of the checkout, built from a copy of its sources in `work`."""
    source = source_copy(work / "source")
    tools = work / "build-tools"
    venv.EnvBuilder(with_pip=True).create(tools)
    python = bin_of(tools, "python")
    dist = work / "dist"
    if run([python, "-m", "pip", "install", "--quiet", "build"], cwd=work, check=False).returncode == 0:
        say("building the sdist and the wheel from it (python -m build)")
        run([python, "-m", "build", "--outdir", str(dist), str(source)], cwd=work)
    else:
        say("`build` does not install: pip wheel --no-deps")
        run([python, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)], cwd=work)
    wheels = sorted(dist.glob("labservice-*.whl"))
    if len(wheels) != 1:
        fail(f"expected one wheel in {dist}, found {[w.name for w in wheels]}")
    return wheels[0]


def clean_environment() -> dict[str, str]:
    """This process's environment without labservice's settings or a path into the checkout."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LABSERVICE_") and name not in ("DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV")
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(url: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_serve(labservice: str, here: Path, env: dict[str, str], version: str) -> None:
    key = run(
        [labservice, "create-key", "--name", "wheel-smoke", "--scopes", "interpret,read"], cwd=here, env=env
    ).stdout.strip()
    if not key:
        fail("create-key printed no key")
    base = f"http://127.0.0.1:{free_port()}"
    log = here / "serve.log"
    with log.open("w") as handle:
        server = subprocess.Popen(
            [labservice, "serve", "--bind", base.removeprefix("http://"), "--workers", "1"],
            cwd=here,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        status: int = 0
        health: dict = {}
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status, health = request(base + "/healthz")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
                continue
            if status != 503:
                break
            time.sleep(0.5)  # 503 + Retry-After: the front sheds while gunicorn's worker is still starting (issue 12)
        if status != 200 or health.get("version") != version or health.get("database") != "ok":
            fail(f"serve: /healthz answered {status} {health}\n{log.read_text()}")
        say(f"serve: /healthz {health}")
        status, answer = request(base + "/api/v1/interpretations", CBC, key)
        codes = [finding.get("code") for finding in answer.get("findings", [])]
        if status != 200 or "thrombocytopenia" not in codes:
            fail(f"serve: the interpretation answered {status} {answer}")
        say(f"serve: POST /api/v1/interpretations 200, findings {codes}")
        status, _ = request(base + "/api/v1/interpretations", CBC)
        if status != 401:
            fail(f"serve: an interpretation without a key answered {status}, not 401")
    finally:
        stop(server)


def check_mllp(labservice: str, here: Path, env: dict[str, str]) -> None:
    listener = subprocess.Popen(
        [labservice, "mllp", "--port", "0"],
        cwd=here,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = listener.stdout.readline() if listener.stdout else ""
        found = re.search(r"listening on (\S+):(\d+)", line)
        if not found:
            fail(f"mllp: no 'listening on' line ({line!r})")
        with socket.create_connection((found[1], int(found[2])), timeout=30) as connection:
            connection.sendall(b"\x0b" + ORU.encode() + b"\x1c\r")
            ack = b""
            while not ack.endswith(b"\x1c\r"):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                ack += chunk
        if b"MSA|AA|SMOKE-0001" not in ack:
            fail(f"mllp: the ACK is not AA: {ack!r}")
        say("mllp: ORU^R01 answered MSA|AA")
    finally:
        stop(listener)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="labservice-wheel-") as temporary:
        work = Path(temporary).resolve()
        if work == ROOT or ROOT in work.parents:
            fail(f"the temporary directory {work} is inside the checkout")
        wheel = build_wheel(work)
        version = wheel.name.split("-")[1]
        say(f"installing {wheel.name} into a fresh venv")
        target = work / "venv"
        venv.EnvBuilder(with_pip=True).create(target)
        run([bin_of(target, "python"), "-m", "pip", "install", "--quiet", str(wheel)], cwd=work)
        labservice = bin_of(target, "labservice")
        here = work / "elsewhere"  # the working directory of every command: not the checkout
        here.mkdir()
        env = clean_environment()

        printed = run([labservice, "--version"], cwd=here, env=env).stdout.strip()
        if printed != f"labservice {version}":
            fail(f"--version printed {printed!r}, not 'labservice {version}'")
        checked = run([labservice, "check-ranges"], cwd=here, env=env).stdout.strip()
        if not checked.startswith("OK v1-") or str(target) not in checked:
            fail(f"check-ranges: {checked!r} (expected OK and the tables inside the venv)")
        say(f"check-ranges: {checked}")

        (here / "cbc.csv").write_text(CSV, encoding="utf-8")
        run([labservice, "interpret", "cbc.csv", "-o", "out.csv"], cwd=here, env=env)
        rows = {line.split(",")[0]: line for line in (here / "out.csv").read_text(encoding="utf-8").splitlines()}
        if "thrombocytopenia" not in rows.get("SMOKE-1", "") or "thrombocytopenia" in rows.get("SMOKE-2", "x"):
            fail(f"interpret: unexpected output {rows}")
        say("interpret: SMOKE-1 thrombocytopenia, SMOKE-2 none")

        check_serve(labservice, here, env, version)
        check_mllp(labservice, here, env)
        if not (here / "instance" / "labservice.sqlite").is_file():
            fail("the embedded database is not in ./instance of the working directory")
        say(f"OK: {wheel.name} works from {here} (database {here / 'instance' / 'labservice.sqlite'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
