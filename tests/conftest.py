"""One conftest: a migrated database per backend, a clean database per test, factories, login.

Every test that takes `app` runs on SQLite and, when PORTAL_TEST_POSTGRES_URL is set, on
PostgreSQL too. With CI=true a skipped test is a failure: nothing may quietly not run.
"""
from __future__ import annotations

import os
import re
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from portal import create_app, migrate
from portal.admin import service
from portal.auth import passwords
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
             portal_admin: bool = False, password: str = PASSWORD) -> User:
        with self.app.app_context():
            db = get_session()
            org = db.get(Organization, org.id)
            user, _ = service.create_user(db, org, email or f"{role}-{uuid.uuid4().hex[:8]}@example.test",
                                          f"Test {role}", role, password=password, portal_admin=portal_admin)
            db.commit()
            return user


@pytest.fixture
def make(app):
    return Factory(app)


# -- signing in -------------------------------------------------------------------------------
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token a real page hands out, read from its <meta> tag."""
    response = client.get(path)
    match = CSRF_META.search(response.get_data(as_text=True))
    assert match, f"no csrf-token meta on {path} ({response.status_code})"
    return match.group(1)


def login(client, email: str, password: str = PASSWORD):
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


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
