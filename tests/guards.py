"""A guard against pathological (quadratic) work in tests: not a speed assertion.

`finishes_within(10)` fails the test, instead of letting it hang for minutes, when the block is still running
after a generous bound. Parsers fed a megabyte of hostile text finish in a fraction of that when their work is
linear; a quadratic one takes minutes to hours. SIGALRM interrupts Python code and regular-expression matching
(the `re` engine checks for signals), so a backtracking pattern is stopped too. Main thread only (pytest's).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

#: The bound used by the hostile-input tests: far above linear work on a megabyte, far below quadratic.
GENEROUS_SECONDS = 10.0


@contextmanager
def finishes_within(seconds: float = GENEROUS_SECONDS) -> Iterator[None]:
    def expire(signum, frame):
        raise AssertionError(f"still working after {seconds:g} s: quadratic (or worse) work on hostile input?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
