"""labservice.serving.gunicorn_conf under a real gunicorn: the metrics directory it makes when none is given (each
worker writes its Prometheus files there) is removed when gunicorn exits, so restarts leave no directories behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _metrics_dirs(folder: Path) -> list[Path]:
    return sorted(folder.glob("labservice-metrics-*"))


def test_the_metrics_directory_gunicorn_made_is_removed_when_it_exits(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        TMPDIR=str(temporary),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
        LABSERVICE_INSTANCE_PATH=str(tmp_path / "instance"),
    )
    gunicorn = Path(sys.executable).parent / "gunicorn"
    port = _free_port()
    server = subprocess.Popen(
        [str(gunicorn), "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # serving: gunicorn has read its configuration and handles SIGTERM
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        assert len(_metrics_dirs(temporary)) == 1
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert _metrics_dirs(temporary) == []
