"""Rate limits per caller: GCRA in memory and in the real Redis on 127.0.0.1:6379; 429 problem+json with
Retry-After; per key, anonymous callers by address; a stricter limit for uploads and sign-in attempts."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from labservice.middleware.ratelimit import MemoryLimiter, Rate, RedisLimiter
from tests.api.helpers import assert_problem
from tests.credentials import csrf_token
from tests.redis_support import unique_prefix
from tests.security.audit_support import bearer_client, cbc, csv_upload, new_key, wide_csv

REDIS_URL = "redis://127.0.0.1:6379/15"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the rate text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("600/minute", 600, 60),
        ("10/second", 10, 1),
        ("100 per hour", 100, 3600),
        ("5/day", 5, 86400),
        ("30/5min", 30, 300),
        ("1/30s", 1, 30),
        (" 7 / MINUTE ", 7, 60),
    ],
)
def test_rates_are_read(text, limit, period):
    assert Rate.parse(text) == Rate(limit, period)


@pytest.mark.parametrize("text", ["off", "", "0", "none", None])
def test_off_means_no_limit(text):
    assert Rate.parse(text) is None


@pytest.mark.parametrize("text", ["600", "600/fortnight", "-1/minute", "abc", "10/"])
def test_a_malformed_rate_names_the_setting(text):
    with pytest.raises(ValueError, match="RATE_LIMIT_UPLOADS"):
        Rate.parse(text, "RATE_LIMIT_UPLOADS")


def test_a_malformed_rate_stops_the_app(make_app):
    with pytest.raises(ValueError, match="RATE_LIMIT="):
        make_app(RATE_LIMIT="lots")


# --- GCRA in memory --------------------------------------------------------------------------------


def test_a_burst_of_n_then_one_per_period_over_n():
    clock = Clock()
    limiter = MemoryLimiter(clock)
    rate = Rate(3, 60)  # a burst of 3, then one every 20 s
    decisions = [limiter.hit("k", rate) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after == pytest.approx(20.0)
    clock.now += 19.9
    assert not limiter.hit("k", rate).allowed  # a refused request costs nothing ...
    clock.now += 0.1
    assert limiter.hit("k", rate).allowed  # ... so the next is admitted exactly on time
    assert not limiter.hit("k", rate).allowed
    clock.now += 60
    assert [limiter.hit("k", rate).allowed for _ in range(4)] == [True, True, True, False]  # the full burst again


def test_keys_are_counted_apart_and_old_keys_are_pruned():
    clock = Clock()
    limiter = MemoryLimiter(clock)
    rate = Rate(1, 1)
    assert limiter.hit("a", rate).allowed and limiter.hit("b", rate).allowed
    assert not limiter.hit("a", rate).allowed
    clock.now += 10
    for i in range(MemoryLimiter.PRUNE_EVERY):
        limiter.hit(f"x{i}", Rate(1000, 0.001))
    clock.now += 10
    limiter.hit("c", rate)  # the next pruning pass drops every key whose time has passed
    for _ in range(MemoryLimiter.PRUNE_EVERY):
        limiter.hit("c", rate)
    assert set(limiter.tats) <= {"c"}


# --- GCRA in Redis ---------------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix unique to this test in the real Redis (skipped when none answers); keys removed after."""
    yield from unique_prefix(REDIS_URL)


def redis_limiter(prefix: str) -> RedisLimiter:
    return RedisLimiter.from_url(REDIS_URL, prefix)


def test_redis_gives_a_burst_then_refuses_with_the_time_to_wait(redis_prefix):
    limiter = redis_limiter(redis_prefix)
    rate = Rate(3, 60)
    decisions = [limiter.hit("k", rate) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert 19.0 < decisions[3].retry_after <= 20.0
    ttl = limiter.client.pttl(redis_prefix + "k")
    assert 0 < ttl <= 60_001  # the key expires by itself once its time has passed


def test_redis_counts_exactly_under_concurrency(redis_prefix):
    rate = Rate(50, 60)
    allowed = []
    lock = threading.Lock()

    def worker() -> None:
        limiter = redis_limiter(redis_prefix)  # like separate workers: their own connections
        for _ in range(10):
            decision = limiter.hit("shared", rate)
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 200 and sum(allowed) == 50


def test_without_redis_the_limiter_counts_in_memory_and_says_so(caplog):
    limiter = RedisLimiter.from_url("redis://127.0.0.1:1/0", "unreachable:")  # nothing listens on port 1
    rate = Rate(2, 60)
    assert [limiter.hit("k", rate).allowed for _ in range(3)] == [True, True, False]
    assert any("Redis rate-limit store unavailable" in record.getMessage() for record in caplog.records)


# --- in the app ------------------------------------------------------------------------------------


def test_the_limit_is_per_key_and_the_answer_is_429_with_retry_after(make_app):
    app = make_app(RATE_LIMIT="3/minute")
    first, second = (bearer_client(app, new_key(app, "read")) for _ in range(2))
    assert [first.get("/api/v1/referrals").status_code for _ in range(3)] == [200, 200, 200]
    refused = first.get("/api/v1/referrals")
    body = assert_problem(refused, 429)
    assert refused.headers["Retry-After"] == "20" and "try again in 20 s" in body["detail"]
    assert second.get("/api/v1/referrals").status_code == 200  # another key has its own count


def test_every_counted_answer_carries_the_ratelimit_headers(make_app):
    """Issue 14 item 4: RateLimit-* (draft-ietf-httpapi-ratelimit-headers-07) beside Retry-After. 3/minute is a
    burst of 3 and one request every 20 s: after the first, 2 left and the whole quota back in 20 s; after the
    third, none left and the quota back in 60 s."""
    app = make_app(RATE_LIMIT="3/minute")
    client = bearer_client(app, new_key(app, "read"))
    answers = [client.get("/api/v1/referrals") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert all(a.headers["RateLimit-Limit"] == "3" and a.headers["RateLimit-Policy"] == "3;w=60" for a in answers)
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert [a.headers["RateLimit-Reset"] for a in answers] == ["20", "40", "60", "60"]
    assert answers[3].headers["Retry-After"] == "20"


def test_uncounted_answers_carry_no_ratelimit_headers(make_app):
    app = make_app(RATE_LIMIT="off")
    assert "RateLimit-Limit" not in app.test_client().get("/api/v1/ruleset").headers
    limited = make_app(RATE_LIMIT="3/minute")
    assert "RateLimit-Limit" not in limited.test_client().get("/healthz").headers  # health checks are exempt


def test_redis_tells_when_the_whole_quota_is_back(redis_prefix):
    limiter = redis_limiter(redis_prefix)
    decisions = [limiter.hit("k", Rate(3, 60)) for _ in range(4)]
    assert [round(d.reset) for d in decisions] == [20, 40, 60, 60]


def test_anonymous_callers_are_counted_by_address(make_app):
    app = make_app(RATE_LIMIT="2/minute")
    one = FlaskClient(app, app.response_class)
    other = FlaskClient(app, app.response_class)
    one.environ_base["REMOTE_ADDR"], other.environ_base["REMOTE_ADDR"] = "192.0.2.1", "192.0.2.2"
    assert [one.get("/api/v1/ruleset").status_code for _ in range(3)] == [200, 200, 429]
    assert other.get("/api/v1/ruleset").status_code == 200


def test_health_checks_and_static_files_are_not_limited(make_app, client):
    app = make_app(RATE_LIMIT="1/minute")
    client = app.test_client()
    assert all(client.get("/healthz").status_code == 200 for _ in range(5))
    assert all(client.get("/dashboard/static/dashboard.css").status_code == 200 for _ in range(5))


def test_uploads_have_their_own_stricter_limit(make_app):
    app = make_app(RATE_LIMIT_UPLOADS="1/minute")
    client = app.test_client()
    assert client.post("/api/v1/batches", data=csv_upload(wide_csv([("MRN-1", 40)]))).status_code == 202
    refused = client.post("/api/v1/batches", data=csv_upload(wide_csv([("MRN-2", 40)])))
    body = assert_problem(refused, 429)
    assert "batch uploads" in body["detail"] and int(refused.headers["Retry-After"]) == 60
    assert client.post("/api/v1/interpretations", json=cbc("MRN-3")).status_code == 200  # other requests go on
    pages = [
        client.post(
            "/dashboard/batches", data={**csv_upload(wide_csv([(patient, 40)])), "csrf_token": csrf_token(client)}
        )
        for patient in ("MRN-4", "MRN-5")
    ]
    assert pages[0].status_code == 303  # the signed-in user is another caller than the API key
    assert pages[1].status_code == 429 and pages[1].mimetype == "text/html" and pages[1].headers["Retry-After"]


def test_the_dashboard_answers_429_as_a_page(make_app):
    app = make_app(RATE_LIMIT="1/minute")
    client = app.test_client()
    assert client.get("/dashboard/").status_code == 200
    page = client.get("/dashboard/")
    assert page.status_code == 429 and page.mimetype == "text/html"
    assert "Too many requests" in page.get_data(as_text=True) and int(page.headers["Retry-After"]) >= 1


def test_off_turns_the_limit_off(make_app):
    app = make_app(RATE_LIMIT="off")
    client = app.test_client()
    assert all(client.get("/api/v1/ruleset").status_code == 200 for _ in range(30))


def test_with_redis_every_worker_shares_the_count(make_app, redis_prefix):
    """Two apps on one database stand for two gunicorn workers: with REDIS_URL they share the counts."""
    first = make_app(RATE_LIMIT="3/minute", REDIS_URL=REDIS_URL, RATE_LIMIT_PREFIX=redis_prefix)
    second = make_app(
        RATE_LIMIT="3/minute",
        REDIS_URL=REDIS_URL,
        RATE_LIMIT_PREFIX=redis_prefix,
        DATABASE_URL=first.config["DATABASE_URL"],
    )
    token = new_key(first, "read", name="shared-key")
    one, two = bearer_client(first, token), bearer_client(second, token)
    statuses = [
        one.get("/api/v1/referrals").status_code,
        two.get("/api/v1/referrals").status_code,
        one.get("/api/v1/referrals").status_code,
        two.get("/api/v1/referrals").status_code,
    ]
    assert statuses == [200, 200, 200, 429]


def test_without_redis_each_worker_counts_alone(make_app):
    first = make_app(RATE_LIMIT="2/minute")
    second = make_app(RATE_LIMIT="2/minute", DATABASE_URL=first.config["DATABASE_URL"])
    token = new_key(first, "read", name="shared-key")
    one, two = bearer_client(first, token), bearer_client(second, token)
    assert [one.get("/api/v1/referrals").status_code for _ in range(3)] == [200, 200, 429]
    assert two.get("/api/v1/referrals").status_code == 200  # documented: in memory, per process


def test_sign_in_attempts_are_limited_by_address_whoever_they_claim_to_be(make_app):
    app = make_app(RATE_LIMIT_SIGN_IN="2/minute")
    if "dashboard.sign_in" not in app.view_functions:
        pytest.skip("the dashboard's sign-in comes with its own commit")
    client = FlaskClient(app, app.response_class, use_cookies=True)
    client.get("/dashboard/sign-in")
    from tests.credentials import csrf_token as token_of

    token = token_of(client)
    statuses = [
        client.post(
            "/dashboard/sign-in", data={"username": f"user{i}", "password": "x", "csrf_token": token}
        ).status_code
        for i in range(3)
    ]
    assert statuses == [401, 401, 429]
    assert client.get("/dashboard/sign-in").status_code == 200  # the page itself is not a sign-in attempt
