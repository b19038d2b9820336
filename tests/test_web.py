"""Health check and error pages: useful to operators, silent about internals."""
from portal.policy.gate import public
from tests.conftest import make_test_app


def test_healthz_checks_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_healthz_reports_unavailable_without_details(tmp_path):
    app = make_test_app("sqlite:////nonexistent-dir/portal.sqlite3", tmp_path)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.json == {"status": "unavailable"}
    assert "nonexistent" not in response.get_data(as_text=True)
    app.extensions["portal.db"].dispose()


def test_unexpected_error_shows_a_friendly_page_without_stack_trace(app, client):
    """A crash answers 500 with a plain page: no traceback, no exception text."""

    @public
    def explode():
        raise RuntimeError("secret internal detail")

    app.add_url_rule("/explode", "explode", explode)
    response = client.get("/explode")
    body = response.get_data(as_text=True)
    assert response.status_code == 500 and "Something went wrong" in body
    assert "Traceback" not in body and "secret internal detail" not in body


def test_api_errors_are_problem_details(client):
    response = client.get("/api/v1/nothing")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json == {"type": "about:blank", "title": "Not found", "status": 404}


def test_404_page_is_friendly(client):
    response = client.get("/does/not/exist")
    assert response.status_code == 404 and "Not found" in response.get_data(as_text=True)
