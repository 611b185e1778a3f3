"""A real Dask LocalCluster for the cluster tests: 2 worker processes, 1 thread each, small memory limits (the
machine is shared). Tests that use it are slow (tests/conftest.py: a LocalCluster starts processes). They reach
it as `labservice interpret --scheduler` does, by its address. The extra 'distributed' is needed: tasks.py installs
it, so CI runs these tests rather than skipping them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from distributed import Client, LocalCluster

WORKERS = 2


def local_cluster() -> LocalCluster:
    return LocalCluster(
        n_workers=WORKERS,
        threads_per_worker=1,
        processes=True,
        memory_limit="1.5GiB",
        dashboard_address=":0",
    )


@pytest.fixture(scope="package")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster() as running:
        yield running


@pytest.fixture
def observer(cluster: LocalCluster) -> Iterator[Client]:
    """A client of the cluster for the test's own questions (which worker runs what, their process ids)."""
    with Client(cluster.scheduler_address) as client:
        yield client
