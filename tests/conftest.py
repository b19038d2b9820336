"""One conftest: a migrated database per backend, a clean database per test, factories, login.

Every test that takes `app` runs on SQLite and, when PORTAL_TEST_POSTGRES_URL is set, on
PostgreSQL too. With CI=true a skipped test is a failure: nothing may quietly not run.
"""
from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import pyotp
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from portal import create_app, migrate
from portal.admin import service
from portal.auth import mfa, passwords
from portal.auth.service import normalize_email
from portal.crypto import generate_key_entry
from portal.db import Base, get_session
from portal.models import Organization, User

CI = os.environ.get("CI") == "true"

# argon2id at its production cost takes about half a second a hash on this machine; the suite
# hashes thousands. Same algorithm, lower cost; the CLI and entrypoint tests run the real cost.
passwords.use_parameters(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery staple"
SECRET = "test-secret-key-" + "x" * 32
KEK = generate_key_entry("test1")


# -- in CI nothing may be skipped -------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true forbids skips): {report.longrepr}"


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.postgres_only` tests run only against PostgreSQL (never skipped on SQLite)."""
    keep, drop = [], []
    for item in items:
        backend = item.callspec.params.get("database_url") if hasattr(item, "callspec") else None
        (drop if item.get_closest_marker("postgres_only") and backend == "sqlite" else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# -- databases --------------------------------------------------------------------------------
def _postgres_database(base_url: str, name: str) -> str:
    """Create a fresh database beside the one in PORTAL_TEST_POSTGRES_URL; return its URL."""
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(base_url: str, name: str) -> None:
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_base_url():
    url = os.environ.get("PORTAL_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("PORTAL_TEST_POSTGRES_URL is not set")
    return url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    """A migrated, empty database for the whole session, one per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'portal.sqlite3'}"
        migrate.upgrade(url)
        yield url
        return
    base = request.getfixturevalue("postgres_base_url")
    name = f"portal_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = _postgres_database(base, name)
    migrate.upgrade(url)
    yield url
    _drop_postgres_database(base, name)


def _empty_all_tables(url: str) -> None:
    engine = create_engine(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # The audit log's append-only trigger is skipped in replica mode (superuser only).
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))
        conn.execute(text("INSERT INTO audit_head (id, size) VALUES (1, 0)"))  # an empty log
    engine.dispose()


def make_test_app(database_url: str, tmp_path, **overrides):
    config = {"PORTAL_ENV": "test", "PORTAL_DATABASE_URL": database_url, "PORTAL_SECRET_KEY": SECRET,
              "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"), "PORTAL_KEK": KEK}
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app(database_url, tmp_path):
    app = make_test_app(database_url, tmp_path)
    yield app
    app.extensions["portal.db"].dispose()
    _empty_all_tables(database_url)


@pytest.fixture
def db(app):
    with app.app_context():
        yield get_session()


@pytest.fixture
def client(app):
    return app.test_client()


# -- factories --------------------------------------------------------------------------------
class Factory:
    """Organizations and users through the real services, committed."""

    def __init__(self, app):
        self.app = app

    def org(self, kind: str = "cvi_team", name: str | None = None) -> Organization:
        with self.app.app_context():
            db = get_session()
            org = service.create_organization(db, name or f"{kind} {uuid.uuid4().hex[:6]}", kind, [])
            db.commit()
            return org

    def user(self, org: Organization, role: str = "staff", email: str | None = None,
             portal_admin: bool = False, password: str = PASSWORD, mfa: bool | None = None) -> User:
        """A user; with a TOTP second factor when the portal requires one of them (or `mfa=True`),
        without one when `mfa=False`."""
        with self.app.app_context():
            db = get_session()
            org = db.get(Organization, org.id)
            user, _ = service.create_user(db, org, email or f"{role}-{uuid.uuid4().hex[:8]}@example.test",
                                          f"Test {role}", role, password=password, portal_admin=portal_admin)
            if mfa or (mfa is None and mfa_required(self.app, user)):
                enroll(self.app, db, user)
            db.commit()
            return user

    def enroll(self, user: User, secret: str | None = None) -> str:
        """Give an existing user a confirmed TOTP second factor; returns its base32 secret."""
        with self.app.app_context():
            db = get_session()
            secret = enroll(self.app, db, db.get(User, user.id), secret)
            db.commit()
            return secret


@pytest.fixture
def make(app):
    return Factory(app)


# -- the second factor --------------------------------------------------------------------------
def mfa_required(app, user: User) -> bool:
    return mfa.required(user, app.config["PORTAL"].mfa_required_kinds)


def enroll(app, db, user: User, secret: str | None = None) -> str:
    """A confirmed TOTP second factor for the user, through the real service (sealed secret,
    hashed recovery codes); the caller commits. Returns the base32 secret."""
    secret = secret or pyotp.random_base32()
    mfa.enroll(db, app.extensions["portal.keyring"], user, secret)
    return secret


def totp_code(secret: str, last_used_step: int | None = None) -> str:
    """A code the portal accepts now and has not seen: the earliest time step of its window (one
    step either side of now) after the last one used, so that the same account can sign in again
    at once. Never the step before now when that one is about to leave the window; when every
    step of the window is used, wait for the next one."""
    while True:
        clock = time.time()
        now = int(clock) // mfa.STEP_SECONDS
        seconds_left = mfa.STEP_SECONDS - clock % mfa.STEP_SECONDS
        earliest = now - mfa.VALID_WINDOW if seconds_left > 3 else now - mfa.VALID_WINDOW + 1
        for step in range(earliest, now + mfa.VALID_WINDOW + 1):
            if last_used_step is None or step > last_used_step:
                return pyotp.TOTP(secret, interval=mfa.STEP_SECONDS).generate_otp(step)
        time.sleep(seconds_left + 0.05)


def second_factor_code(app, email: str) -> str:
    """A fresh, unused TOTP code for this account, computed from its sealed secret in the database."""
    with app.app_context():
        db = get_session()
        user = db.scalar(select(User).where(User.email == normalize_email(email)))
        row = mfa.credential(db, user) if user else None
        assert row is not None and row.confirmed_at is not None, f"{email} has no second factor"
        return totp_code(mfa.secret_of(db, app.extensions["portal.keyring"], user), row.last_used_step)


# -- signing in -------------------------------------------------------------------------------
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
SECRET_ON_PAGE = re.compile(r'<code id="totp-secret">([A-Z2-7 ]+)</code>')


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token a real page hands out, read from its <meta> tag."""
    response = client.get(path)
    match = CSRF_META.search(response.get_data(as_text=True))
    assert match, f"no csrf-token meta on {path} ({response.status_code})"
    return match.group(1)


def login(client, email: str, password: str = PASSWORD, *, second_factor: bool = True):
    """Sign in through the real forms; return the last response.

    After the password, an account with a second factor gets a fresh code typed at /login/code
    (the response is then that step's redirect); one that must set up a second factor first goes
    through /login/enroll with the secret read off the page (the response is then the page of
    recovery codes). With `second_factor=False`, only the password step runs.
    """
    token = csrf_token(client)
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    step = urlsplit(response.location or "").path if response.status_code == 302 else None
    if not second_factor or step not in ("/login/code", "/login/enroll"):
        return response
    if step == "/login/code":
        return submit_code(client, "/login/code", second_factor_code(client.application, email))
    page = client.get("/login/enroll").get_data(as_text=True)
    secret = SECRET_ON_PAGE.search(page).group(1).replace(" ", "")
    return client.post("/login/enroll", data={"code": totp_code(secret), "csrf_token": CSRF_META.search(page).group(1)})


def submit_code(client, path: str, code: str):
    """POST a second-factor code to `path` with the CSRF token that page hands out."""
    return client.post(path, data={"code": code, "csrf_token": csrf_token(client, path)})


@pytest.fixture
def login_as(client, make):
    """Create a user of the given kind and role, sign in, and return the user."""

    def _login(kind: str = "cvi_team", role: str = "staff", portal_admin: bool = False, org=None):
        org = org or make.org(kind)
        user = make.user(org, role, portal_admin=portal_admin)
        response = login(client, user.email)
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return _login


# -- a real SMTP server on loopback (aiosmtpd) ---------------------------------------------------
class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlowInbox(Inbox):
    """Takes 1.5 s over each message, and says when the first one arrives."""

    def __init__(self):
        super().__init__()
        self.receiving = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.receiving.set()
        await asyncio.sleep(1.5)
        return await super().handle_DATA(server, session, envelope)


def _serving(inbox):
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def smtp():
    yield from _serving(Inbox())


@pytest.fixture
def slow_smtp():
    yield from _serving(SlowInbox())
