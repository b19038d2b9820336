"""A database connection lost mid-request answers 503 with a page that says so, never a 500.

Found by bench/faults.py: PostgreSQL terminating the portal's connections (a failover, a restart,
pg_terminate_backend) turned the requests in flight into 500s. Here the request's own backend is
terminated by a real PostgreSQL, once while the view runs and once while the audit events of a
page are committed after it; either way the page is not served, the answer is a clear 503, and
the next request works on a fresh connection.
"""
import pytest
from sqlalchemy import create_engine, text

from portal.db import get_session
from portal.web.errors import UNAVAILABLE
from tests.conftest import login
from tests.referral_world import build_world

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def killer(app):
    """Terminates the backend of the current request's connection, when armed for a path."""
    admin = create_engine(app.config["PORTAL"].database_url, isolation_level="AUTOCOMMIT")
    armed = {}

    def kill_now():
        pid = get_session().execute(text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()

    from flask import request

    @app.before_request
    def _before_view():
        if armed.pop(("before", request.path), False):
            kill_now()

    @app.after_request
    def _after_view(response):  # registered last, so it runs before the audit log's commit
        if armed.pop(("after", request.path), False):
            kill_now()
        return response

    yield armed
    admin.dispose()


def signed_in(app, user):
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    return client


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_killed_connection_answers_503_and_the_next_request_works(app, killer, when):
    """The page, the JSON API and the next request, with the backend killed before or after the view."""
    world = build_world(app)
    client = signed_in(app, world.north_staff)

    killer[(when, "/referrals/inbox")] = True
    response = client.get("/referrals/inbox")
    page = response.get_data(as_text=True)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert UNAVAILABLE in page and "Traceback" not in page and "<h1>Inbox</h1>" not in page

    killer[(when, "/api/v1/referrals")] = True
    response = client.get("/api/v1/referrals?box=inbox")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == UNAVAILABLE

    assert not killer  # both were used
    assert client.get("/referrals/inbox").status_code == 200
    assert client.get("/api/v1/referrals?box=inbox").status_code == 200
