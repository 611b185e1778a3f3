"""A short-lived cache of API keys' principals, per worker process: a storing request then needs no database
round trip (nor transaction) of its own to authenticate.

Only keys found valid are cached, under a SHA-256 of the whole token (a wrong secret never matches an entry),
for API_KEY_CACHE_SECONDS (5 by default; 0 turns the cache off). A key revoked with `labservice revoke-key`
therefore stops working within that many seconds on every worker, not at once; `last_used_at` is refreshed
when the key is looked up again after its entry expired (it is kept at a one-minute resolution anyway).
The clock is injectable (tests move it instead of sleeping).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from labservice.security.principal import Principal

#: Entries kept at most (a full cache is emptied: entries are cheap to make again).
MAX_ENTRIES = 4096


class PrincipalCache:
    """Principals by token for `ttl` seconds of `clock` (time.monotonic by default)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES):
        self.ttl = float(ttl)
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()

    def get(self, token: str) -> Principal | None:
        """The cached principal of this token, or None when there is none or it expired."""
        if self.ttl <= 0:
            return None
        key = self._key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self.clock() >= entry[0]:
                del self._entries[key]
                return None
            return entry[1]

    def put(self, token: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[self._key(token)] = (self.clock() + self.ttl, principal)
