"""Work on chunks in child processes forked for each chunk, results back in input order.

A forked child starts with the parent's memory (copy-on-write): the chunk it works on is not
pickled on the way in, which for a chunk of text cells costs more than the work itself (a
100,000-row chunk of a wide file: about 0.2 s to pickle and unpickle, against 0.5 s of parsing,
interpreting and formatting). Only the result comes back through a pipe: the output texts, as
one string per format, and a small summary. At most `jobs` children run at once while this
process reads the next chunk; each child holds one chunk, so memory stays bounded by the chunk size.

POSIX only (os.fork); the caller runs the work in its own process where fork is missing.
"""

from __future__ import annotations

import os
import pickle
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")

CAN_FORK = hasattr(os, "fork")


class ChunkWorkerError(RuntimeError):
    """A child process failed on its chunk (its traceback is in the message) or died without an answer."""


def forked_results(tasks: Iterable[Task], work: Callable[[Task], Result], jobs: int) -> Iterator[Result]:
    """work(task) for every task, each in a child process forked for it, at most `jobs` at once; in task order."""
    # (child pid, read end of its pipe, its task), oldest first. The task is let go only once its child has
    # ended: freeing it while the child runs would copy every page of it that the two still share.
    pending: deque[tuple[int, int, Task]] = deque()
    try:
        for task in tasks:  # the next chunk is read here while the children work on theirs
            if len(pending) >= jobs:
                pid, read_end, _ = pending.popleft()
                yield _collect(pid, read_end)
            pending.append((*_start(work, task), task))
            del task
        while pending:
            pid, read_end, _ = pending.popleft()
            yield _collect(pid, read_end)
    finally:
        for pid, read_end, _ in pending:  # stopped early (an error or a closed generator): end the others
            os.close(read_end)
            _end(pid)


def _start(work: Callable[[Any], Any], task: Any) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's clean-up or flushes its buffers
        status = 0
        try:
            os.close(read_end)
            try:
                payload = pickle.dumps((True, work(task)), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as error:  # any failure goes to the parent, which raises it
                payload = _failure(error)
                status = 1
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def _failure(error: BaseException) -> bytes:
    """The exception itself when it pickles (the parent raises the same type), else its traceback as text."""
    try:
        return pickle.dumps((False, error), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that does not pickle goes as text
        return pickle.dumps((False, traceback.format_exc()))


def _collect(pid: int, read_end: int) -> Any:
    with os.fdopen(read_end, "rb") as source:
        payload = source.read()  # until the child closes its end
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise ChunkWorkerError(f"the worker process for a chunk died without an answer (wait status {status})")
    ok, value = pickle.loads(payload)
    if not ok:
        if isinstance(value, BaseException):
            raise value
        raise ChunkWorkerError(f"the worker process for a chunk failed:\n{value}")
    return value


def _end(pid: int) -> None:
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
