"""Rate limits per caller: 429 problem+json with Retry-After, and the caller's quota on every answer as
`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy`
(draft-ietf-httpapi-ratelimit-headers-07; the general `RATE_LIMIT` quota).

**Who is counted.** A signed-in caller by `current_principal().id` (`api_key:lis-interface`,
`user:dr.smith`); an anonymous caller by its address (TRUSTED_PROXIES applied). Limits:

- `RATE_LIMIT` (default `600/minute`): every request except `/healthz` and static files;
- `RATE_LIMIT_UPLOADS` (default `30/minute`): CSV uploads (POST /api/v1/batches, the dashboard's upload),
  counted on top of the first;
- `RATE_LIMIT_SIGN_IN` (default `10/minute`): sign-in attempts, by address whoever they claim to be
  (behind TRUSTED_PROXIES, the first untrusted address of X-Forwarded-For, read from the right);
- `RATE_LIMIT_SIGN_IN_GLOBAL` (default `120/minute`): sign-in attempts from all addresses together. Each
  attempt costs an argon2 verification; a caller who can rotate addresses (an IPv6 range, a botnet, a host
  inside TRUSTED_PROXIES) escapes the per-address limit but not this one.

A limit is `N/second`, `N/minute`, `N/hour` or `N/day` (also `N/30s`, `N/5min`), or `off`.

**Algorithm: GCRA** (the generic cell rate algorithm, a token bucket kept as one timestamp per key).
`N/period` admits a burst of N requests and then one request every period/N; a refused request costs
nothing, and Retry-After says exactly when the next one will be admitted (rounded up to a second). Unlike a
fixed window it never lets 2N through around a window's edge.

**Where the counts live.** With `REDIS_URL` the state is in Redis, shared by every worker and host: one
Lua script reads and writes the key atomically and takes the time from the Redis server (so the hosts'
clocks do not matter); keys expire by themselves. Without it, each process keeps its own counts in memory
(gunicorn's 2 workers each admit N/period, so a caller may get up to 2N through). If Redis stops answering,
the limiter falls back to memory for that process, logs a warning, and tries Redis again after 5 s: a
limiter must not take the service down with it.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask, Response, current_app, g, request

from labservice.security.principal import current_principal
from labservice.security.remote import remote_address

log = logging.getLogger("labservice.ratelimit")

EXTENSION = "labservice.rate_limiter"
#: Endpoints never limited: health checks from load balancers, and static files.
EXEMPT_ENDPOINTS = frozenset({"health.healthz", "health.livez", "health.readyz", "static"})
#: POSTs that upload a CSV batch (the expensive requests).
UPLOAD_ENDPOINTS = frozenset({"batches.create_batch", "dashboard.upload_batch"})
#: Sign-in form posts (counted by address).
SIGN_IN_ENDPOINTS = frozenset(
    {
        "dashboard.sign_in",
        "dashboard.login",
        "auth.login",
        "auth.sign_in",
        "dashboard.sign_in_post",
        "dashboard.login_post",
    }
)
UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
RATE_TEXT = re.compile(r"\s*(\d+)\s*(?:/|per)\s*(\d*)\s*([a-z]+)\s*", re.IGNORECASE)
OFF = ("", "off", "none", "0", "false", "unlimited")


@dataclass(frozen=True)
class Rate:
    limit: int
    period: float  # seconds

    @property
    def emission(self) -> float:
        """Seconds between two requests once the burst is spent."""
        return self.period / self.limit

    @classmethod
    def parse(cls, text: str | None, setting: str = "RATE_LIMIT") -> Rate | None:
        """'600/minute' -> Rate(600, 60); 'off' -> None; raise ValueError naming the setting otherwise."""
        if text is None or str(text).strip().lower() in OFF:
            return None
        match = RATE_TEXT.fullmatch(str(text))
        unit = UNITS.get(match.group(3).lower()) if match else None
        if match is None or unit is None or int(match.group(1)) < 1:
            raise ValueError(f"{setting}={text!r} is not a rate such as 600/minute, 10/second or off")
        return cls(int(match.group(1)), int(match.group(2) or 1) * unit)

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until a request would be admitted (0 when this one was)
    remaining: int  # requests still admitted at once after this one
    reset: float = 0.0  # seconds until the whole quota is available again


class Limiter(Protocol):
    def hit(self, key: str, rate: Rate) -> Decision: ...


def _gcra(tat: float | None, now: float, rate: Rate) -> tuple[Decision, float | None]:
    """(decision, new theoretical arrival time to keep or None to keep the old one)."""
    tat = max(tat if tat is not None else now, now)
    new_tat = tat + rate.emission
    allow_at = new_tat - rate.period
    if now < allow_at:
        return Decision(False, allow_at - now, 0, tat - now), None
    remaining = math.floor((rate.period - (new_tat - now)) / rate.emission + 1e-9)
    return Decision(True, 0.0, max(remaining, 0), new_tat - now), new_tat


class MemoryLimiter:
    """GCRA in this process's memory (one float per key; keys past their time are pruned)."""

    PRUNE_EVERY = 1000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.tats: dict[str, float] = {}
        self.lock = threading.Lock()
        self.hits = 0

    def hit(self, key: str, rate: Rate) -> Decision:
        with self.lock:
            now = self.clock()
            decision, new_tat = _gcra(self.tats.get(key), now, rate)
            if new_tat is not None:
                self.tats[key] = new_tat
            self.hits += 1
            if self.hits % self.PRUNE_EVERY == 0:
                self.tats = {k: v for k, v in self.tats.items() if v > now}
            return decision


#: GCRA in one atomic step: KEYS[1] holds the theoretical arrival time in ms (server clock).
GCRA_SCRIPT = """
local emission = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - period
if now < allow_at then
  return {0, tostring(allow_at - now), '0', tostring(tat - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
local remaining = math.floor((period - (new_tat - now)) / emission + 1e-9)
return {1, '0', tostring(remaining), tostring(new_tat - now)}
"""


class RedisLimiter:
    """GCRA in Redis (see GCRA_SCRIPT), falling back to memory while Redis does not answer."""

    RETRY_SECONDS = 5.0
    WARN_EVERY_SECONDS = 60.0

    def __init__(self, client: Any, prefix: str, fallback: MemoryLimiter | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.script = client.register_script(GCRA_SCRIPT)
        self.fallback = fallback or MemoryLimiter()
        self.down_until = 0.0
        self.warned_at = -math.inf

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisLimiter:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=30)
        return cls(client, prefix)

    def hit(self, key: str, rate: Rate) -> Decision:
        now = time.monotonic()
        if now >= self.down_until:
            try:
                allowed, retry_ms, remaining, reset_ms = self.script(
                    keys=[self.prefix + key], args=[repr(rate.emission * 1000), repr(rate.period * 1000)]
                )
                return Decision(
                    bool(int(allowed)), float(retry_ms) / 1000, int(float(remaining)), float(reset_ms) / 1000
                )
            except Exception as error:  # redis.RedisError, OSError: count in memory for a while
                self.down_until = now + self.RETRY_SECONDS
                if now - self.warned_at >= self.WARN_EVERY_SECONDS:
                    self.warned_at = now
                    log.warning(
                        "Redis rate-limit store unavailable (%s): counting in this process's memory for %gs",
                        type(error).__name__,
                        self.RETRY_SECONDS,
                    )
        return self.fallback.hit(key, rate)


# --- in the app ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    general: Rate | None
    uploads: Rate | None
    sign_in: Rate | None
    sign_in_global: Rate | None = None


def _identity() -> str:
    principal = current_principal()
    if principal.kind == "anonymous":
        return f"address:{remote_address() or 'unknown'}"
    return principal.id


def check_rate_limits() -> Response | None:
    """before_request: count this request against the caller's limits; 429 when one is spent."""
    state = current_app.extensions.get(EXTENSION)
    endpoint = request.endpoint or ""
    if state is None or endpoint in EXEMPT_ENDPOINTS or endpoint.endswith(".static"):
        return None
    limiter, policy = state
    checks: list[tuple[str, Rate]] = []
    if endpoint in SIGN_IN_ENDPOINTS and request.method == "POST":
        if policy.sign_in is not None:
            checks.append((f"sign-in:address:{remote_address() or 'unknown'}", policy.sign_in))
        if policy.sign_in_global is not None:  # after the per-address count: its refusals cost the rest nothing
            checks.append(("sign-in:all", policy.sign_in_global))
    identity = _identity()
    if policy.general is not None:
        checks.append((f"all:{identity}", policy.general))
    if endpoint in UPLOAD_ENDPOINTS and request.method == "POST" and policy.uploads is not None:
        checks.append((f"upload:{identity}", policy.uploads))
    for key, rate in checks:
        decision = limiter.hit(key, rate)
        if key.startswith("all:"):
            g.rate_limit_headers = rate_limit_headers(rate, decision)
        if not decision.allowed:
            response = too_many_requests(decision.retry_after, key.split(":", 1)[0])
            response.headers.update(rate_limit_headers(rate, decision))
            return response
    return None


def rate_limit_headers(rate: Rate, decision: Decision) -> dict[str, str]:
    """The caller's quota as draft-ietf-httpapi-ratelimit-headers (-07) words it: the limit and its window
    (`RateLimit-Policy: 600;w=60`), what is left now, and the seconds until the whole quota is back."""
    return {
        "RateLimit-Limit": str(rate.limit),
        "RateLimit-Remaining": str(max(decision.remaining, 0)),
        "RateLimit-Reset": str(max(0, math.ceil(decision.reset - 1e-9))),
        "RateLimit-Policy": f"{rate.limit};w={rate.period:g}",
    }


def add_rate_limit_headers(response: Response) -> Response:
    """after_request: the general quota's headers on every answer that was counted against it."""
    headers = g.pop("rate_limit_headers", None)
    if headers:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
    return response


WHAT = {"all": "requests", "upload": "batch uploads", "sign-in": "sign-in attempts"}


def too_many_requests(retry_after: float, bucket: str) -> Response:
    from labservice.errors import problem_response

    seconds = max(1, math.ceil(retry_after))
    detail = f"Too many {WHAT.get(bucket, 'requests')} from this caller; try again in {seconds} s."
    headers = {"Retry-After": str(seconds)}
    if request.path.startswith(("/api/", "/cds-services")):
        return problem_response(429, detail, headers=headers)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Too many requests</title>'
        f"</head><body><h1>Too many requests</h1><p>{detail}</p></body></html>"
    )
    return Response(page, status=429, content_type="text/html; charset=utf-8", headers=headers)


def make_limiter(config: Any) -> Limiter:
    url = config.get("REDIS_URL") or ""
    if url:
        return RedisLimiter.from_url(url, config.get("RATE_LIMIT_PREFIX") or "labservice:ratelimit:")
    return MemoryLimiter()


def register_rate_limits(app: Flask) -> None:
    """Read the limits (a malformed one stops the app, naming the setting) and count every request.

    Register it after authentication: the caller's principal must be known when it runs."""
    policy = Policy(
        Rate.parse(app.config.get("RATE_LIMIT"), "RATE_LIMIT"),
        Rate.parse(app.config.get("RATE_LIMIT_UPLOADS"), "RATE_LIMIT_UPLOADS"),
        Rate.parse(app.config.get("RATE_LIMIT_SIGN_IN"), "RATE_LIMIT_SIGN_IN"),
        Rate.parse(app.config.get("RATE_LIMIT_SIGN_IN_GLOBAL"), "RATE_LIMIT_SIGN_IN_GLOBAL"),
    )
    app.extensions[EXTENSION] = (make_limiter(app.config), policy)
    app.before_request(check_rate_limits)
    app.after_request(add_rate_limit_headers)
