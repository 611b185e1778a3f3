"""Where a job runs: a LocalCluster of worker processes (`local[:N]`), an existing scheduler (`tcp://host:port`),
or this process alone (Dask's synchronous scheduler: the single-process path for Parquet)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections.abc import Iterator
from typing import TextIO

from distributed import Client, LocalCluster

from labservice.adapters.csv_input.options import MappingError
from labservice.batch.distributed.rulesets import RulesetPlugin, RulesetRef

_LOCAL = re.compile(r"^local(?:\[(\d+)\]|:(\d+))?$")


def local_workers(spec: str) -> int:
    """N of `local`, `local:N` or `local[N]` (`local` alone: one worker per core)."""
    match = _LOCAL.match(spec.strip())
    if not match:
        raise MappingError(f"--cluster {spec!r}: expected local, local:N or local[N] (N worker processes)")
    count = match.group(1) or match.group(2)
    workers = int(count) if count else (os.cpu_count() or 1)
    if workers < 1:
        raise MappingError(f"--cluster {spec!r}: at least one worker")
    return workers


def start_local_cluster(workers: int, memory_limit: str | int = "auto") -> LocalCluster:
    """N worker processes with one thread each (the engine is numpy: processes, not threads, use the cores)."""
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # a free port (None would take 8787); its pages need bokeh
        memory_limit=memory_limit,
    )


@contextlib.contextmanager
def connected(
    cluster: str | None, scheduler: str | None, ruleset: RulesetRef, say: TextIO | None = None
) -> Iterator[Client | None]:
    """A client of the cluster asked for, with the rule tables loaded on every worker; None for this process."""
    if scheduler is None and cluster is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            client = stack.enter_context(Client(scheduler))
        else:
            local = stack.enter_context(start_local_cluster(local_workers(cluster or "local")))
            client = stack.enter_context(Client(local))
        client.register_plugin(RulesetPlugin(ruleset), name=f"labservice-rules-{ruleset.version}")
        if say is not None:
            workers = len(client.scheduler_info().get("workers", {}))
            has_pages = importlib.util.find_spec("bokeh") is not None  # the dashboard's pages need bokeh
            link = (
                client.dashboard_link
                if has_pages and "dashboard" in client.scheduler_info().get("services", {})
                else None
            )
            say.write(
                f"dask: {workers} workers at {client.scheduler.address}" + (f"; dashboard {link}" if link else "")
            )
            say.write("\n")
        yield client
