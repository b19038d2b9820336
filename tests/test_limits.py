"""Rate limits: generous per client address, per account on the API, a clear 429 with Retry-After.

Each app has its own limiter (memory storage), so a test starts with fresh budgets; the Redis
test shares one budget between two apps, as two workers would, against the real Redis.
"""
import os
import uuid

import pytest
import redis

from portal.auth import limits
from tests.conftest import csrf_token, login, make_test_app

LOGIN_PER_MINUTE = 60
API_PER_MINUTE = 1200
REDIS_URL = os.environ.get("PORTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def flood_login(client, times: int, **request) -> list[int]:
    """POST the login form `times` times (wrong passwords, varied unknown addresses); the statuses."""
    token = csrf_token(client)
    return [client.post("/login", data={"email": f"guess{i}@example.test", "password": "wrong password here",
                                        "csrf_token": token}, **request).status_code for i in range(times)]


def assert_clear_429(response) -> int:
    """A 429 that says what happened and when to come back; returns Retry-After in seconds."""
    assert response.status_code == 429
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    body = response.get_data(as_text=True)
    assert "Too many requests" in body and "Please wait" in body and "Traceback" not in body
    return retry_after


def test_sign_in_allows_60_attempts_a_minute_from_one_address_then_429(app, client):
    """A hospital behind one NAT address gets 60 attempts a minute; the 61st is a clear 429 page
    with Retry-After. Another address, the login page itself and a fresh app are unaffected."""
    assert flood_login(client, LOGIN_PER_MINUTE) == [401] * LOGIN_PER_MINUTE
    limited = client.post("/login", data={"email": "x@example.test", "password": "y" * 12,
                                          "csrf_token": csrf_token(client)})
    assert_clear_429(limited)
    assert limited.mimetype == "text/html" and "<h1>Too many requests</h1>" in limited.get_data(as_text=True)
    assert client.get("/login").status_code == 200  # reading the form is not an attempt
    elsewhere = app.test_client()
    assert flood_login(elsewhere, 1, environ_base={"REMOTE_ADDR": "198.51.100.7"}) == [401]


def test_a_fresh_app_has_fresh_budgets(database_url, tmp_path, app, client):
    """Limits live in each app's own memory storage: one test's flood never trips another's app."""
    assert flood_login(client, LOGIN_PER_MINUTE + 1)[-1] == 429
    other = make_test_app(database_url, tmp_path)
    try:
        assert flood_login(other.test_client(), 1) == [401]
    finally:
        other.extensions["portal.db"].dispose()


def test_the_lockout_is_per_account_and_the_limit_per_address(app, client, make):
    """Ten failures lock one account, not the address: the colleague behind the same NAT signs in."""
    org = make.org("city_office")
    locked, colleague = make.user(org), make.user(org)
    for _ in range(10):
        assert login(client, locked.email, "wrong password here").status_code == 401
    assert login(client, locked.email).status_code == 401
    assert login(app.test_client(), colleague.email).status_code == 302


@pytest.mark.parametrize("trusted, remote, forwarded, expected", [
    (0, "192.0.2.1", "203.0.113.9", "192.0.2.1"),                   # no proxy configured: header ignored
    (1, "10.0.0.2", "203.0.113.9", "203.0.113.9"),                  # our proxy appended the client
    (1, "10.0.0.2", "6.6.6.6, 203.0.113.9", "203.0.113.9"),         # the client's own entry is not read
    (2, "10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.1", "203.0.113.9"),
    (2, "10.0.0.2", "203.0.113.9", "10.0.0.2"),                     # fewer entries than proxies: the peer
    (1, "10.0.0.2", "not-an-address", "10.0.0.2"),
    (0, "2001:db8:1:2:3:4:5:6", None, "2001:db8:1:2::/64"),         # an IPv6 client owns its /64
    (0, "::ffff:192.0.2.44", None, "192.0.2.44"),
])
def test_client_address_trusts_only_the_configured_proxies(database_url, tmp_path, app, trusted, remote,
                                                           forwarded, expected):
    proxied = make_test_app(database_url, tmp_path, PORTAL_TRUSTED_PROXIES=str(trusted))
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    try:
        with proxied.test_request_context("/login", environ_base={"REMOTE_ADDR": remote}, headers=headers):
            assert limits.client_address() == expected
    finally:
        proxied.extensions["portal.db"].dispose()


def test_behind_a_proxy_a_spoofed_forwarded_for_buys_no_new_budget(database_url, tmp_path, app):
    """With one trusted proxy, a client that invents a new leftmost X-Forwarded-For entry on every
    attempt is still counted under the address the proxy appended."""
    proxied = make_test_app(database_url, tmp_path, PORTAL_TRUSTED_PROXIES="1")
    try:
        client = proxied.test_client()
        statuses = [flood_login(client, 1, environ_base={"REMOTE_ADDR": "10.0.0.2"},
                                headers={"X-Forwarded-For": f"198.18.0.{i}, 203.0.113.9"})[0]
                    for i in range(LOGIN_PER_MINUTE + 1)]
        assert statuses == [401] * LOGIN_PER_MINUTE + [429]
        other = flood_login(client, 1, environ_base={"REMOTE_ADDR": "10.0.0.2"},
                            headers={"X-Forwarded-For": "203.0.113.10"})
        assert other == [401]  # another client behind the same proxy
    finally:
        proxied.extensions["portal.db"].dispose()


def test_second_factor_codes_are_limited_per_address(app, client):
    """POST /login/code (the second factor at sign-in) has the same generous per-address limit."""
    token = csrf_token(client)
    statuses = [client.post("/login/code", data={"code": "123456", "csrf_token": token}).status_code
                for _ in range(LOGIN_PER_MINUTE + 1)]
    assert 429 not in statuses[:-1]
    assert_clear_429(client.post("/login/code", data={"code": "123456", "csrf_token": token}))


def test_limits_name_endpoints_that_may_not_exist_yet(database_url, tmp_path, app, monkeypatch):
    """A limit for an endpoint that is not registered (a feature still being built) is skipped."""
    monkeypatch.setitem(limits.ENDPOINT_LIMITS, "auth.not_built_yet", ("1 per minute", limits.BY_ADDRESS, None))
    other = make_test_app(database_url, tmp_path)
    try:
        assert "auth.not_built_yet" not in other.view_functions
        assert flood_login(other.test_client(), 2) == [401, 401]
    finally:
        other.extensions["portal.db"].dispose()


def test_api_budget_outlasts_a_crawl_of_every_api_route():
    """1200 calls a minute per account: a signed-in crawl of every API route with every id of the
    test world (about 750 calls, tests/test_crawl.py) stays well inside it."""
    assert limits.API_LIMIT == f"{API_PER_MINUTE} per minute"


def test_api_counts_per_account_and_answers_problem_details(database_url, tmp_path, app, make, monkeypatch):
    """Two accounts behind the same address have their own API budgets; the 429 is RFC 9457 JSON.
    (The budget is lowered to 30 here: each API call writes an audit event, and 1200 take half a minute.)"""
    monkeypatch.setattr(limits, "API_LIMIT", "30 per minute")
    small = make_test_app(database_url, tmp_path)
    org = make.org("city_office")
    first, second = small.test_client(), small.test_client()
    assert login(first, make.user(org).email).status_code == 302
    assert login(second, make.user(org).email).status_code == 302
    statuses = {first.get("/api/v1/openapi.json").status_code for _ in range(30)}
    assert statuses == {200}
    limited = first.get("/api/v1/openapi.json")
    assert limited.status_code == 429 and limited.mimetype == "application/problem+json"
    problem = limited.get_json()
    assert problem["status"] == 429 and problem["title"] == "Too many requests" and "Please wait" in problem["detail"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert second.get("/api/v1/openapi.json").status_code == 200
    anonymous = small.test_client().get("/api/v1/openapi.json")  # signed out: the address pays, not the account
    assert anonymous.status_code == 401
    small.extensions["portal.db"].dispose()


# -- Redis: one budget for every worker --------------------------------------------------------
@pytest.fixture
def redis_prefix():
    """A key prefix of our own in the test Redis database; every key under it is removed after."""
    prefix = f"portal-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"*{prefix}*"))
    if keys:
        client.delete(*keys)
    assert not list(client.scan_iter(match=f"*{prefix}*"))
    client.close()


def test_redis_storage_is_one_budget_for_two_workers(database_url, tmp_path, app, redis_prefix):
    """Two apps (as two gunicorn workers) on the real Redis at 127.0.0.1:6379 share the address's
    budget: 30 attempts on each, and the next one on either is refused."""
    workers = [make_test_app(database_url, tmp_path, PORTAL_REDIS_URL=REDIS_URL, RATELIMIT_KEY_PREFIX=redis_prefix)
               for _ in range(2)]
    try:
        assert all(type(w.extensions["portal.limiter"].storage).__name__ == "RedisStorage" for w in workers)
        one, two = (w.test_client() for w in workers)
        assert flood_login(one, 30) + flood_login(two, 30) == [401] * LOGIN_PER_MINUTE
        assert_clear_429(two.post("/login", data={"email": "a@example.test", "password": "b" * 12,
                                                  "csrf_token": csrf_token(two)}))
        stored = redis.Redis.from_url(REDIS_URL)
        assert list(stored.scan_iter(match=f"*{redis_prefix}*"))  # the counts really live in Redis
        stored.close()
    finally:
        for worker in workers:
            worker.extensions["portal.db"].dispose()


def test_the_api_budget_in_redis_is_the_account_s_across_workers_one_counter_a_call(
        database_url, tmp_path, app, make, monkeypatch, redis_prefix):
    """The account's API budget on the real Redis, as production keeps it: two sessions of one
    account on two workers share it (15 calls on each, then 429 on either), and every call moves
    one counter by one -- the limit costs one Redis round trip a call, whatever the route."""
    monkeypatch.setattr(limits, "API_LIMIT", "30 per minute")
    workers = [make_test_app(database_url, tmp_path, PORTAL_REDIS_URL=REDIS_URL, RATELIMIT_KEY_PREFIX=redis_prefix)
               for _ in range(2)]
    try:
        user = make.user(make.org("city_office"))
        one, two = (w.test_client() for w in workers)
        assert login(one, user.email).status_code == 302 and login(two, user.email).status_code == 302
        routes = ["/api/v1/openapi.json", "/api/v1/referrals?box=sent"]
        statuses = [client.get(routes[i % 2]).status_code for i in range(15) for client in (one, two)]
        assert set(statuses) <= {200, 403} and len(statuses) == 30  # refused by the policy or not, each call counts
        stored = redis.Redis.from_url(REDIS_URL)
        counters = list(stored.scan_iter(match=f"*{redis_prefix}*user:{user.id}*"))
        assert len(counters) == 1 and int(stored.get(counters[0])) == 30
        stored.close()
        for client in (two, one):
            limited = client.get("/api/v1/openapi.json")
            assert limited.status_code == 429 and limited.mimetype == "application/problem+json"
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
    finally:
        for worker in workers:
            worker.extensions["portal.db"].dispose()


def test_a_redis_outage_does_not_lock_anyone_out(database_url, tmp_path, app, make, caplog):
    """With Redis unreachable the portal keeps answering -- each process counts in its own memory
    meanwhile -- and still refuses the 61st attempt from one address."""
    from tests.conftest import free_port
    down = make_test_app(database_url, tmp_path, PORTAL_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        user = make.user(make.org("city_office"))
        client = down.test_client()
        assert login(client, user.email).status_code == 302
        assert "falling back to in-memory storage" in caplog.text
        assert flood_login(down.test_client(), LOGIN_PER_MINUTE) == [401] * 59 + [429]  # the sign-in counted too
    finally:
        down.extensions["portal.db"].dispose()


def test_trusted_proxies_setting_is_validated_at_start(database_url, tmp_path, app):
    """PORTAL_TRUSTED_PROXIES that is not a small whole number stops the portal at start-up."""
    from portal.config import ConfigError
    with pytest.raises(ConfigError, match="PORTAL_TRUSTED_PROXIES"):
        make_test_app(database_url, tmp_path, PORTAL_TRUSTED_PROXIES="all")


def test_limits_leave_ordinary_pages_alone(app, client, make):
    """Signed-in pages outside the API carry no limit: 100 home page loads are all answered."""
    assert login(client, make.user(make.org("city_office")).email).status_code == 302
    assert {client.get("/").status_code for _ in range(100)} == {200}
