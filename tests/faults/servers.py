"""Real processes for the fault tests: gunicorn serving the app, and a private PostgreSQL cluster.

Every wait is bounded, and every process started here is stopped (and the cluster's directory removed)
however the test ends. The private cluster lives in a temporary directory on a free port, so stopping it
never touches the shared server on 5432.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: Longest wait for a process to start or stop.
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `condition` until it returns something true; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def create_api_key(url: str, name: str = "fault-tests") -> str | None:
    """An API key (scopes interpret, read) made with the real command, `labservice create-key` (run from this
    checkout); None where the service has no API keys (before authentication existed)."""
    if importlib.util.find_spec("labservice.security.keys") is None:
        return None
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "labservice.cli",
            "create-key",
            "--name",
            name,
            "--scopes",
            "interpret,read",
            "--url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def bearer(key: str | None) -> dict[str, str]:
    """The Authorization header for `key` (none without one)."""
    return {"Authorization": f"Bearer {key}"} if key else {}


class Gunicorn:
    """gunicorn serving labservice on a free loopback port (sync workers, as `labservice serve` runs it)."""

    def __init__(self, env: dict[str, str], workers: int = 2, timeout: int = 60) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # Open while the server runs; closed and deleted by stop().
        self.log = tempfile.NamedTemporaryFile(prefix="labservice-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
        argv = [
            str(BIN / "gunicorn"),
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{self.port}",
            "--timeout",
            str(timeout),
            "--graceful-timeout",
            "5",
            "labservice.app:create_app()",
        ]
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.workers = workers
        try:
            wait_until(self._answers, START_TIMEOUT, "gunicorn to answer /healthz")
            wait_until(lambda: len(self.worker_pids()) == workers, START_TIMEOUT, f"{workers} workers")
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.output()}")
        try:
            requests.get(self.base + "/healthz", timeout=2)
        except requests.RequestException:
            return False
        return True

    def worker_pids(self) -> list[int]:
        """The master's live child processes (its workers)."""
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except OSError:
            return []
        alive = []
        for pid in map(int, children):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        return alive

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-50000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Workers left without their master (none should be) do not outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


@contextmanager
def gunicorn(env: dict[str, str], workers: int = 2, timeout: int = 60) -> Iterator[Gunicorn]:
    server = Gunicorn(env, workers, timeout)
    try:
        yield server
    finally:
        server.stop()


def postgresql_bin() -> Path | None:
    """The newest installed PostgreSQL server binaries (initdb and pg_ctl), or None."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for directory in reversed(candidates):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    found = shutil.which("initdb"), shutil.which("pg_ctl")
    return Path(found[0]).parent if all(found) else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary directory, on a free port, trust auth for `postgres`.

    initdb refuses to run as root, so as root the server binaries run as the `postgres` OS user, in a
    directory that user owns."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="labservice-pg-"))
        self.data = self.directory / "data"
        self.logfile = self.directory / "server.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*self.as_user, str(self.bindir / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr}\n{log}")
        return done

    def start(self) -> None:
        # fsync=off only saves time: an immediate stop still loses no committed transaction (the OS keeps the
        # written pages); synchronous_commit stays on, since with it off an immediate stop would.
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "-t", "30", "start"],
            timeout=START_TIMEOUT + 10,
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"], timeout=START_TIMEOUT + 10)

    def destroy(self) -> None:
        subprocess.run(
            [
                *self.as_user,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
                "stop",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private cluster, stopped and deleted at the end; skips when no PostgreSQL binaries exist."""
    import pytest

    bindir = postgresql_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: initdb cannot run as root")
    cluster = PrivatePostgres(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
