"""A key prefix in the real Redis, unique to one test, for the tests that use Redis (rate limits, sign-in)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


def unique_prefix(url: str) -> Iterator[str]:
    """Yield a key prefix unique to this test in the Redis at `url` (skip when none answers); delete its keys after."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis server at {url}")
    prefix = f"labservice-test:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()
