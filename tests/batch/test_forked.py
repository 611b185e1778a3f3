"""Chunks worked on in worker processes forked once (labservice.batch.forked): order, failures, clean-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labservice.batch.forked import CAN_FORK, ChunkWorkerError, forked_results

pytestmark = pytest.mark.skipif(not CAN_FORK, reason="needs os.fork")


def test_results_come_back_in_task_order_from_child_processes() -> None:
    chunks = [list(range(k * 1000)) for k in range(7)]
    results = list(forked_results(chunks, lambda chunk: (len(chunk), sum(chunk), os.getpid()), jobs=2))
    assert [(size, total) for size, total, _ in results] == [(len(c), sum(c)) for c in chunks]
    pids = [pid for _, _, pid in results]
    assert os.getpid() not in pids and len(set(pids)) == 2  # two workers, each forked once for all the chunks
    assert pids[0::2] == [pids[0]] * 4 and pids[1::2] == [pids[1]] * 3  # in turn


def test_the_work_function_is_inherited_only_the_tasks_are_pickled() -> None:
    offset = {"value": 10}  # a closure over local state does not pickle; the workers inherit it
    results = forked_results(range(5), lambda k: k + offset["value"], jobs=2)
    assert list(results) == [10, 11, 12, 13, 14]


def test_big_tasks_and_results_cross_the_pipes_whole() -> None:
    chunks = [bytes([k]) * (3 << 20) for k in range(4)]  # larger than the pipes' buffers
    results = list(forked_results(chunks, lambda chunk: chunk[::-1] + b"!", jobs=2))
    assert results == [chunk[::-1] + b"!" for chunk in chunks]


def test_a_failure_in_a_child_is_raised_here_with_its_type() -> None:
    def work(k: int) -> int:
        if k == 3:
            raise ValueError(f"chunk {k} is bad")
        return k

    results = forked_results(range(6), work, jobs=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="chunk 3 is bad"):
        next(results)


def test_an_exception_that_does_not_pickle_comes_back_as_its_traceback() -> None:
    class Unpicklable(Exception):
        def __reduce__(self):
            raise TypeError("not picklable")

    def work(k: int) -> int:
        raise Unpicklable("local class")

    with pytest.raises(ChunkWorkerError, match="Unpicklable: local class"):
        list(forked_results(range(2), work, jobs=2))


def test_a_child_that_dies_is_reported() -> None:
    def work(k: int) -> int:
        if k == 1:
            os._exit(3)  # dies without an answer, as if killed
        return k

    with pytest.raises(ChunkWorkerError, match="died without an answer"):
        list(forked_results(range(3), work, jobs=2))


def children() -> set[int]:
    """This process's children, running or not yet reaped (zombies), from /proc."""
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_stopping_early_ends_and_reaps_the_other_children() -> None:
    before = children()
    results = forked_results(range(10), lambda k: k, jobs=3)
    assert next(results) == 0
    assert len(children() - before) == 3  # the workers: three chunks were handed out before the first came back
    results.close()
    assert children() == before  # none left running, none left unreaped


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_the_workers_end_when_all_is_done_and_after_a_failure() -> None:
    before = children()
    assert list(forked_results(range(10), lambda k: k, jobs=2)) == list(range(10))
    assert children() == before

    def work(k: int) -> int:
        if k == 4:
            raise ValueError("bad")
        return k

    with pytest.raises(ValueError, match="bad"):
        list(forked_results(range(10), work, jobs=2))
    assert children() == before
