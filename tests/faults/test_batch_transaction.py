"""A batch is stored in one transaction, ordered with the rename of its files (issue 6 §5), on SQLite and
PostgreSQL.

A real process (a fork of the test) runs the batch in small chunks and is killed with SIGKILL at a chosen
point: after two chunks were stored, after the commit but before the rename. Then what is left is checked,
and the app (as the next upload or download would) settles it: nothing of a batch killed before its commit;
all of a batch killed after it. Also: a file that cannot be read stores nothing, and two uploads of the
same file at once store it once.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from labservice.adapters.csv_input.options import BatchOptions
from labservice.batch import run_batch
from labservice.batch.keep import batch_transaction
from labservice.batch.results_store import CREATING_PREFIX, LOCK_NAME, STALE_CREATING_SECONDS, BatchStore, batch_id_for
from labservice.core.ruleset import default_ruleset
from labservice.store.database import Database
from labservice.store.models import Batch, CbcResult, Interpretation, Patient, Referral

TABLES = (Batch, Patient, CbcResult, Interpretation, Referral)
ROWS = 10
# Every other CBC has platelets 15 x10^9/L (< 20, critical: clinical-rules §3) and opens a referral.
CSV = (
    "Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),NEUT# (10^9/L)\n"
    + "".join(
        f"TX-{row % 5},2026-11-{1 + row // 5:02d}T08:00:00Z,F,40,{15 if row % 2 else 230},13.5,3.0\n"
        for row in range(ROWS)
    )
).encode()
CHUNK_ROWS = 3  # 4 chunks


def counts(url: str) -> dict[str, int]:
    database = Database.connect(url)
    try:
        with database.session() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0 for model in TABLES
            }
    finally:
        database.engine.dispose()


NOTHING = {"batches": 0, "patients": 0, "cbc_results": 0, "interpretations": 0, "referrals": 0}


def run_in_child(target: Callable[[], None]) -> int:
    """Run `target` in a forked process; return the signal that ended it (0 if it exited)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            target()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the child did not end")
        time.sleep(0.05)


def store_batch_then(
    url: str, directory: Path, *, die_after_chunks: int | None = None, die_after_commit: bool = False
) -> str:
    """The batch id; in a child process, store CSV as a batch and kill that process at the point given."""
    rs = default_ruleset()
    batch_id = batch_id_for("0" * 64, {}, rs.version)

    def child() -> None:
        database = Database.connect(url)  # its own connections, not the parent's
        store = BatchStore(directory)
        with batch_transaction(
            database, rs, 7, batch_id=batch_id, content_sha256="0" * 64, filename="tx.csv"
        ) as transaction:
            chunks = 0

            def keep_rows(parsed, interpreted, errors) -> int:
                nonlocal chunks
                stored = transaction.keep_rows(parsed, interpreted, errors)
                chunks += 1
                if chunks == die_after_chunks:
                    os.kill(os.getpid(), signal.SIGKILL)
                return stored

            def produce(csv_out, json_out) -> dict[str, Any]:
                summary = run_batch(
                    io.BytesIO(CSV),
                    csv_out=csv_out,
                    json_out=json_out,
                    options=BatchOptions(chunk_rows=CHUNK_ROWS),
                    ruleset=rs,
                    keep_rows=keep_rows,
                )
                transaction.finish(summary.to_dict())
                return {
                    "batch_id": batch_id,
                    "content_sha256": "0" * 64,
                    "mapping": {},
                    "filename": "tx.csv",
                    "created_at": "2026-11-21T00:00:00+00:00",
                    "summary": summary.to_dict(),
                }

            def commit() -> None:
                transaction.commit()
                if die_after_commit:
                    os.kill(os.getpid(), signal.SIGKILL)

            store.save(batch_id, produce, commit=commit)

    assert run_in_child(child) == signal.SIGKILL
    return batch_id


def upload(client, data: bytes = CSV):
    return client.post(
        "/api/v1/batches", data={"file": (io.BytesIO(data), "tx.csv")}, content_type="multipart/form-data"
    )


def leftovers(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir()) if directory.exists() else []


def test_killed_after_two_chunks_leaves_no_row_and_the_upload_then_works(make_app, database_url, tmp_path):
    directory = tmp_path / "batches"
    store_batch_then(database_url, directory, die_after_chunks=2)
    assert counts(database_url) == NOTHING  # two chunks (6 rows) were stored, none committed
    [partial] = leftovers(directory)
    assert partial.startswith(".partial-")
    answer = upload(make_app(DATABASE_URL=database_url, BATCH_DIRECTORY=str(directory)).test_client())
    assert answer.status_code == 202, answer.json
    assert answer.json["summary"]["stored"] == ROWS
    stored = counts(database_url)
    assert (stored["batches"], stored["patients"], stored["cbc_results"], stored["interpretations"]) == (
        1,
        5,
        ROWS,
        ROWS,
    )
    assert stored["referrals"] == 5  # each patient has an urgent CBC: one open referral each
    assert leftovers(directory) == [answer.json["batch_id"]], "the killed upload's directory is deleted"


def test_killed_between_commit_and_rename_the_batch_is_moved_into_place(make_app, database_url, tmp_path):
    directory = tmp_path / "batches"
    batch_id = store_batch_then(database_url, directory, die_after_commit=True)
    committed = counts(database_url)
    assert committed["batches"] == 1 and committed["cbc_results"] == ROWS
    [partial] = leftovers(directory)
    assert partial.startswith(f".partial-{batch_id}-")
    client = make_app(DATABASE_URL=database_url, BATCH_DIRECTORY=str(directory)).test_client()
    found = client.get(f"/api/v1/batches/{batch_id}")  # a download finds it, and moves it into place
    assert found.status_code == 200, found.json
    assert found.json["summary"]["stored"] == ROWS
    assert leftovers(directory) == [batch_id]
    assert sorted(os.listdir(directory / batch_id)) == ["pages.npz", "result.csv", "result.json", "summary.json"]
    assert counts(database_url) == committed


def test_killed_before_its_lock_the_creating_directory_is_removed_once_old(tmp_path):
    store = BatchStore(tmp_path)
    young = tmp_path / f"{CREATING_PREFIX}young"
    old = tmp_path / f"{CREATING_PREFIX}old"
    for folder in (young, old):
        folder.mkdir()
        (folder / LOCK_NAME).touch()
    past = time.time() - STALE_CREATING_SECONDS - 5
    os.utime(old, (past, past))
    assert store.recover(lambda batch_id: True) == []
    assert leftovers(tmp_path) == [young.name]


def test_a_directory_whose_lock_is_held_is_left_alone(tmp_path):
    """A live upload holds its lock: recovery neither deletes nor moves its directory."""
    import fcntl

    store = BatchStore(tmp_path)
    live = tmp_path / f".partial-{'a' * 32}-live"
    live.mkdir()
    (live / "summary.json").write_text("{}")
    with (live / LOCK_NAME).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert store.recover(lambda batch_id: True) == []
        assert leftovers(tmp_path) == [live.name]
    assert store.recover(lambda batch_id: True) == ["a" * 32]  # released (its writer "died"): committed, kept
    assert leftovers(tmp_path) == ["a" * 32]


def test_a_file_that_cannot_be_read_stores_nothing(make_app, database_url, tmp_path):
    client = make_app(DATABASE_URL=database_url, BATCH_DIRECTORY=str(tmp_path / "batches")).test_client()
    answer = upload(client, b"\x00\x01\x02 not a csv \xff\xfe")
    assert answer.status_code == 422
    assert counts(database_url) == NOTHING
    assert leftovers(tmp_path / "batches") == []


def test_two_uploads_of_the_same_file_at_once_store_it_once(make_app, database_url, tmp_path):
    app = make_app(DATABASE_URL=database_url, BATCH_DIRECTORY=str(tmp_path / "batches"))
    answers: list[Any] = []

    def send() -> None:
        answers.append(upload(app.test_client()))

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    statuses = sorted(answer.status_code for answer in answers)
    assert len(statuses) == 3 and set(statuses) <= {200, 202}, statuses
    # One upload queued the job (docs/batches.md#jobs); the others were answered that batch, done or running.
    assert sorted(answer.json["already_uploaded"] for answer in answers) == [False, True, True]
    assert {answer.json["batch_id"] for answer in answers} == {answers[0].json["batch_id"]}
    assert counts(database_url)["batches"] == 1 and counts(database_url)["cbc_results"] == ROWS
    assert leftovers(tmp_path / "batches") == [answers[0].json["batch_id"]]


def test_the_summary_in_the_database_is_the_one_answered(make_app, database_url, tmp_path):
    client = make_app(DATABASE_URL=database_url, BATCH_DIRECTORY=str(tmp_path / "batches")).test_client()
    answer = upload(client)
    database = Database.connect(database_url)
    try:
        with database.session() as session:
            batch = session.get(Batch, answer.json["batch_id"])
            assert batch is not None and batch.summary == answer.json["summary"]
            assert (batch.rows_out, batch.stored) == (ROWS, ROWS)
    finally:
        database.engine.dispose()
