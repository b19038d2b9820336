"""Per-address lockout with growing back-off: the rules with an injected clock, then the login form.

Time moves by passing `now` to the service or by editing the stored locked_until; never by sleeping.
"""
import re
import threading
from datetime import timedelta

from sqlalchemy import select, update

from portal.auth import lockout, service, tokens
from portal.db import get_session, utcnow
from portal.models import LoginThrottle, User
from tests.conftest import PASSWORD, csrf_token, login

GENERIC = "That e-mail and password do not match an active account."
WRONG = "not the password at all"


def fail(db, email: str, times: int, now=None) -> None:
    for _ in range(times):
        assert service.authenticate(db, email, WRONG, now) is None


def stored(db, email: str) -> LoginThrottle | None:
    return db.get(LoginThrottle, lockout.key_for(email), populate_existing=True)


def test_backoff_doubles_from_one_minute_and_stops_at_an_hour():
    """No lock below 10 failures; then 1, 2, 4 ... minutes, never more than an hour."""
    assert [lockout.backoff(n) for n in (0, 9)] == [None, None]
    assert [lockout.backoff(n).total_seconds() / 60 for n in range(10, 18)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert lockout.backoff(99) == lockout.MAX_BACKOFF


def test_ten_failures_lock_the_address_until_the_backoff_has_passed(app, db, make):
    """After 10 consecutive failures even the right password is refused for a minute; refused attempts
    are not counted; after the minute the right password works and the count starts again."""
    user = make.user(make.org("city_office"))
    start = utcnow()
    fail(db, user.email, 9, start)
    assert service.authenticate(db, user.email, PASSWORD, start) is not None  # 9 failures: no lock
    fail(db, user.email, 10, start)
    db.commit()
    assert stored(db, user.email).locked_until == start + timedelta(minutes=1)
    assert lockout.is_locked(db, user.email, start + timedelta(seconds=59))
    assert service.authenticate(db, user.email, PASSWORD, start + timedelta(seconds=59)) is None
    fail(db, user.email, 5, start + timedelta(seconds=30))  # refused without checking, not counted
    assert stored(db, user.email).failures == 10
    later = start + timedelta(minutes=1, seconds=1)
    assert service.authenticate(db, user.email, PASSWORD, later) is not None
    db.commit()
    assert stored(db, user.email) is None and db.get(User, user.id).failed_login_count == 0


def test_each_further_failure_doubles_the_wait(db, make):
    user = make.user(make.org("city_office"))
    now = utcnow()
    fail(db, user.email, 10, now)
    for minutes in (2, 4, 8):
        now = stored(db, user.email).locked_until + timedelta(seconds=1)
        fail(db, user.email, 1, now)
        assert stored(db, user.email).locked_until == now + timedelta(minutes=minutes)
    assert db.get(User, user.id).failed_login_count == 13  # the users column mirrors the count


def test_an_unknown_address_is_locked_exactly_like_a_known_one(db, make):
    """The state is keyed by the address, not an account: nothing tells them apart."""
    known = make.user(make.org("city_office"))
    now = utcnow()
    fail(db, known.email, 10, now)
    fail(db, "nobody-here@example.test", 10, now)
    a, b = stored(db, known.email), stored(db, "Nobody-Here@Example.test ")
    assert (a.failures, a.locked_until) == (b.failures, b.locked_until) == (10, now + timedelta(minutes=1))
    assert known.email not in a.key_hash and len(a.key_hash) == 64  # a hash, never the address


def test_at_100_consecutive_failures_only_a_reset_or_an_admin_unlocks(app, db, make):
    """NIST SP 800-63B 5.2.2: never more than 100 consecutive failures. The 100th locks for good;
    waiting a year does not help; a password reset does."""
    user = make.user(make.org("city_office"))
    now = utcnow()
    fail(db, user.email, 10, now)
    db.execute(update(LoginThrottle).where(LoginThrottle.key_hash == lockout.key_for(user.email))
               .values(failures=99, locked_until=None))
    fail(db, user.email, 1, now)
    assert stored(db, user.email).failures == lockout.HARD_LIMIT
    a_year = now + timedelta(days=365)
    assert service.authenticate(db, user.email, PASSWORD, a_year) is None
    assert stored(db, user.email).failures == lockout.HARD_LIMIT  # refused, not counted
    raw = tokens.issue(db, app.extensions["portal.keyring"], db.get(User, user.id), tokens.RESET, a_year)
    tokens.redeem(db, raw, tokens.RESET, "a brand new passphrase", a_year)
    assert stored(db, user.email) is None
    assert service.authenticate(db, user.email, "a brand new passphrase", a_year) is not None


def test_concurrent_failures_are_all_counted(app, make):
    """Twelve workers fail at once on an address never seen before: the count is 12, not less, and
    no insert race ends in an error (one UPDATE per failure; a savepoint for the first insert)."""
    email = "raced@example.test"
    errors, barrier = [], threading.Barrier(12)

    def worker():
        try:
            with app.app_context():
                db = get_session()
                barrier.wait(timeout=10)
                lockout.record_failure(db, email)
                db.commit()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with app.app_context():
        row = get_session().get(LoginThrottle, lockout.key_for(email))
        assert row.failures == 12 and row.locked_until is not None


# -- through the login form ------------------------------------------------------------------
def _page(response, *emails) -> str:
    """The answer without its CSRF tokens and the address typed back into the form."""
    body = re.sub(r"[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}", "TOKEN", response.get_data(as_text=True))
    for email in emails:
        body = body.replace(email, "EMAIL")
    return body


def test_locked_account_gets_the_unknown_address_answer_and_spares_its_neighbour(app, client, make):
    """From one address: 10 wrong passwords lock the account; then its right password gets the very
    answer an unknown address gets. A colleague signing in from the same address is not affected.
    Once the back-off has passed (locked_until moved into the past), the right password works."""
    org = make.org("city_office")
    victim, colleague = make.user(org), make.user(org)
    for _ in range(10):
        assert login(client, victim.email, WRONG).status_code == 401
    locked = login(client, victim.email)
    unknown = login(client, "no-account@example.test")
    assert locked.status_code == unknown.status_code == 401
    assert GENERIC in locked.get_data(as_text=True)
    assert _page(locked, victim.email) == _page(unknown, "no-account@example.test")

    neighbour = app.test_client()  # same client address (the test client's 127.0.0.1)
    assert login(neighbour, colleague.email).status_code == 302

    with app.app_context():
        db = get_session()
        db.execute(update(LoginThrottle).values(locked_until=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert login(client, victim.email).status_code == 302


def test_org_admin_unlocks_an_account_locked_for_good(app, client, make):
    """Past the hard limit the account's own password does not work until its administrator
    unlocks it from the organization's page; the page says sign-in is paused, never why in detail."""
    org = make.org("city_office")
    worker = make.user(org)
    admin = make.user(org, "org_admin")
    with app.app_context():
        db = get_session()
        fail(db, worker.email, 10)
        db.execute(update(LoginThrottle).values(failures=lockout.HARD_LIMIT))
        db.get(User, worker.id).failed_login_count = lockout.HARD_LIMIT
        db.commit()
    assert login(app.test_client(), worker.email).status_code == 401
    assert login(client, admin.email).status_code == 302
    page = client.get(f"/admin/organizations/{org.id}").get_data(as_text=True)
    assert "sign-in paused after repeated failed attempts" in page and "Unlock sign-in" in page
    response = client.post(f"/admin/users/{worker.id}/unlock", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 303
    assert "Unlock sign-in" not in client.get(f"/admin/organizations/{org.id}").get_data(as_text=True)
    assert login(app.test_client(), worker.email).status_code == 302


def test_admin_of_another_organization_cannot_unlock(app, client, make):
    """Unlocking is managing the account: another organization's admin gets 404 and nothing changes."""
    worker = make.user(make.org("city_office"))
    with app.app_context():
        db = get_session()
        fail(db, worker.email, 10)
        db.commit()
    outsider = make.user(make.org("city_office"), "org_admin")
    assert login(client, outsider.email).status_code == 302
    response = client.post(f"/admin/users/{worker.id}/unlock", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 404
    with app.app_context():
        assert lockout.failures(get_session(), worker.email) == 10


def test_successful_sign_in_clears_the_count(app, client, make):
    """Three wrong passwords are counted (and mirrored on the account); the right one clears both."""
    user, count = make.user(make.org("city_office")), 3
    for _ in range(count):
        login(client, user.email, WRONG)
    with app.app_context():
        assert lockout.failures(get_session(), user.email) == count
        assert get_session().scalar(select(User.failed_login_count).where(User.id == user.id)) == count
    assert login(client, user.email).status_code == 302
    with app.app_context():
        assert lockout.failures(get_session(), user.email) == 0


def test_wrong_second_factor_codes_lock_the_account_too(app, make, client):
    """Someone who holds the password cannot guess codes without end: wrong codes count toward
    the same lockout, a locked account's codes are not even checked, and the lock is audited."""
    import pyotp

    from portal.models import AuditEvent
    from tests.conftest import totp_code
    org = make.org("cvi_team")
    user = make.user(org, "staff", mfa=False)
    secret = make.enroll(user)
    token = csrf_token(client)
    assert client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token}).status_code == 302
    for _ in range(10):
        wrong = client.post("/login/code", data={"code": "000000" if pyotp.TOTP(secret).now() != "000000" else "111111",
                                                 "csrf_token": csrf_token(client, "/login/code")})
        assert wrong.status_code == 401
    right = client.post("/login/code", data={"code": totp_code(secret), "csrf_token": csrf_token(client, "/login/code")})
    assert right.status_code == 401  # locked: even the right code is refused until the back-off ends
    with app.app_context():
        db = get_session()
        assert lockout.is_locked(db, user.email)
        locks = db.scalars(select(AuditEvent).where(AuditEvent.action == "auth.account_locked")).all()
        assert len(locks) == 1 and locks[0].actor_id == user.id


def test_retention_forgets_guesses_at_unknown_addresses_but_not_an_accounts_count(app, make):
    org = make.org("city_office")
    user = make.user(org)
    long_ago = utcnow() - timedelta(days=3)
    with app.app_context():
        db = get_session()
        for email in (user.email, "nobody@example.test"):
            lockout.record_failure(db, email, long_ago)
        lockout.record_failure(db, "recent@example.test")
        db.commit()
        assert lockout.prune(db, utcnow()) == 1
        db.commit()
        assert lockout.failures(db, user.email) == 1  # consecutive failures keep adding up
        assert lockout.failures(db, "nobody@example.test") == 0
        assert lockout.failures(db, "recent@example.test") == 1
