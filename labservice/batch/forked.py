"""Work on chunks in worker processes forked once, results back in input order.

Up to `jobs` workers are forked when the work starts (they inherit the work function, so only the tasks and
results are pickled) and each works on one chunk at a time while this process reads the next one. A worker lives
for the whole file: a process forked per chunk spent a third more CPU in all, most of it the kernel copying the
pages it shared with the reader (10^6 wide rows: 1.28 million page faults against 0.37 million in one process). A
task goes to a worker through a pipe, pickled: a chunk as read (pandas' frame with its text columns as Arrow
strings, labservice.adapters.csv_input.reader) pickles as a few buffers, about 20 ms for 100,000 wide rows. The
result comes back the same way: the output texts, one string per format, and a small summary. Memory stays
bounded by the chunk size: each worker holds one chunk, and this process at most one more per worker.

POSIX only (os.fork); the caller runs the work in its own process where fork is missing.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, TypeVar

try:
    import fcntl
except ImportError:  # not POSIX: no workers anyway
    fcntl = None  # type: ignore[assignment]

Task = TypeVar("Task")
Result = TypeVar("Result")

CAN_FORK = hasattr(os, "fork")
#: A message on a pipe: its length (8 bytes), then the pickle.
_LENGTH = struct.Struct("<Q")
#: Pipe buffer asked for (Linux; the default 64 KiB makes a chunk's texts cross in hundreds of small writes).
_PIPE_BYTES = 1 << 20


class ChunkWorkerError(RuntimeError):
    """A worker process failed on its chunk (its traceback is in the message) or died without an answer."""


def forked_results(tasks: Iterable[Task], work: Callable[[Task], Result], jobs: int) -> Iterator[Result]:
    """work(task) for every task, in worker processes forked for the purpose (at most `jobs`); in task order."""
    workers: list[_Worker] = []
    idle: list[_Worker] = []
    busy: deque[_Worker] = deque()  # oldest task first
    done = False
    try:
        for task in tasks:  # the next chunk is read here while the workers work on theirs
            if len(busy) >= jobs:
                worker = busy.popleft()
                yield worker.result()
                idle.append(worker)
            if not idle:
                workers.append(_Worker.start(work, workers))
                idle.append(workers[-1])
            worker = idle.pop()
            worker.send(task)
            busy.append(worker)
            del task
        while busy:
            yield busy.popleft().result()
        done = True
    finally:
        for worker in workers:
            worker.stop(kill=not done)


class _Worker:
    """One worker process and this process's ends of its two pipes (tasks in, results out)."""

    def __init__(self, pid: int, tasks: BinaryIO, results: BinaryIO) -> None:
        self.pid, self.tasks, self.results = pid, tasks, results

    @classmethod
    def start(cls, work: Callable[[Any], Any], others: list[_Worker]) -> _Worker:
        task_read, task_write = _pipe()
        result_read, result_write = _pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns, never runs the parent's clean-up or flushes its buffers
            status = 0
            try:
                for other in others:  # the other workers' pipes: they must see this process's end close
                    other.tasks.close()
                    other.results.close()
                os.close(task_write)
                os.close(result_read)
                with open(task_read, "rb") as tasks, open(result_write, "wb") as results:
                    _serve(work, tasks, results)
            except BaseException:  # a pipe closed under it (the parent stopped): nothing to report to
                status = 1
            finally:
                os._exit(status)
        os.close(task_read)
        os.close(result_write)
        return cls(pid, open(task_write, "wb"), open(result_read, "rb"))

    def send(self, task: Any) -> None:
        _write(self.tasks, pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))

    def result(self) -> Any:
        payload = _read(self.results)
        if payload is None:
            self.stop(kill=False)
            raise ChunkWorkerError(f"the worker process for a chunk died without an answer (wait status {self.status})")
        ok, value = pickle.loads(payload)
        if not ok:
            if isinstance(value, BaseException):
                raise value
            raise ChunkWorkerError(f"the worker process for a chunk failed:\n{value}")
        return value

    status: int | None = None

    def stop(self, kill: bool) -> None:
        """Close the pipes (an idle worker then ends) and reap the process; `kill` it first when stopping early."""
        if self.status is not None:
            return
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)
        for pipe in (self.tasks, self.results):
            with contextlib.suppress(OSError):
                pipe.close()
        with contextlib.suppress(ChildProcessError):
            self.status = os.waitpid(self.pid, 0)[1]


def _serve(work: Callable[[Any], Any], tasks: BinaryIO, results: BinaryIO) -> None:
    """The worker's loop: a task in, its result (or failure) out, until the task pipe is closed."""
    while (payload := _read(tasks)) is not None:
        try:
            task = pickle.loads(payload)
            del payload
            answer = pickle.dumps((True, work(task)), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as error:  # any failure goes to the parent, which raises it
            answer = _failure(error)
        task = None
        _write(results, answer)
        del answer


def _failure(error: BaseException) -> bytes:
    """The exception itself when it pickles (the parent raises the same type), else its traceback as text."""
    try:
        return pickle.dumps((False, error), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that does not pickle goes as text
        return pickle.dumps((False, traceback.format_exc()))


def _pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    with contextlib.suppress(AttributeError, OSError):  # F_SETPIPE_SZ: Linux only
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    return read_end, write_end


def _write(pipe: BinaryIO, payload: bytes) -> None:
    pipe.write(_LENGTH.pack(len(payload)))
    pipe.write(payload)
    pipe.flush()


def _read(pipe: BinaryIO) -> bytes | None:
    """One message, or None when the other end closed (or died) before a whole one came."""
    head = pipe.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    payload = pipe.read(size)
    return payload if len(payload) == size else None
