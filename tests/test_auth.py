"""Login, logout and sessions, tested from the attacker's side."""
import re

import pytest

from portal.db import get_session
from portal.models import User, UserSession
from tests.conftest import PASSWORD, csrf_token, login, make_test_app, second_factor_code, submit_code

GENERIC = "That e-mail and password do not match an active account."


def _error_text(response):
    """The page without its CSRF tokens, which differ on every render."""
    return re.sub(r"[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}", "TOKEN", response.get_data(as_text=True))


def test_login_lands_on_home_and_email_is_case_insensitive(client, make):
    """The e-mail matches whatever its case; a successful login redirects to the home page."""
    user = make.user(make.org("hospital_program"), email="Bedside.Worker@example.test")
    response = login(client, "  BEDSIDE.worker@EXAMPLE.test ")
    assert response.status_code == 302 and response.location == "/"
    assert f"Welcome, {user.display_name}" in client.get("/").get_data(as_text=True)


def test_unknown_email_and_wrong_password_get_the_same_answer(client, make):
    """An attacker cannot tell whether an account exists from the login answer."""
    user = make.user(make.org())
    unknown = login(client, "nobody@example.test", PASSWORD)
    wrong = login(client, user.email, "wrong password entirely")
    assert unknown.status_code == wrong.status_code == 401
    assert GENERIC in unknown.get_data(as_text=True)
    unknown_body = _error_text(unknown).replace("nobody@example.test", "")
    wrong_body = _error_text(wrong).replace(user.email, "")
    assert unknown_body == wrong_body


def test_wrong_password_counts_failures_and_success_resets(app, client, make):
    user = make.user(make.org())
    login(client, user.email, "wrong password entirely")
    login(client, user.email, "wrong password again!!")
    with app.app_context():
        assert get_session().get(User, user.id).failed_login_count == 2
    assert login(client, user.email).status_code == 302
    with app.app_context():
        assert get_session().get(User, user.id).failed_login_count == 0


def test_deactivated_account_cannot_log_in(app, client, make):
    """A deactivated account gets the generic error, even with the right password."""
    user = make.user(make.org())
    with app.app_context():
        db = get_session()
        db.get(User, user.id).active = False
        db.commit()
    response = login(client, user.email)
    assert response.status_code == 401 and GENERIC in response.get_data(as_text=True)


def test_account_of_deactivated_organization_cannot_log_in(app, client, make):
    org = make.org()
    user = make.user(org)
    with app.app_context():
        db = get_session()
        db.get(User, user.id).organization.active = False
        db.commit()
    assert login(client, user.email).status_code == 401


def test_session_is_cleared_at_login(app, client, make):
    """Nothing planted in the session before login survives it (no fixation)."""
    user = make.user(make.org())
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
        session["_user_id"] = "forged-token"
    login(client, user.email)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"] != "forged-token"


def test_replayed_cookie_after_logout_is_refused(app, client, make):
    """Logout ends the session on the server: a copy of the old cookie is worthless."""
    user = make.user(make.org())
    login(client, user.email)
    stolen = client.get_cookie("portal_session").value
    token = csrf_token(client, "/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("portal_session", stolen)
    response = replay.get("/")
    assert response.status_code == 302 and response.location.startswith("/login")
    with app.app_context():
        assert get_session().query(UserSession).filter_by(user_id=user.id).count() == 0


def test_deactivation_ends_every_session_at_once(app, client, make):
    org = make.org()
    user, admin = make.user(org), make.user(org, "org_admin")
    login(client, user.email)
    assert client.get("/").status_code == 200
    with app.app_context():
        from portal.admin.service import set_active
        db = get_session()
        set_active(db, db.get(User, admin.id), db.get(User, user.id), False)
        db.commit()
    response = client.get("/")
    assert response.status_code == 302 and response.location.startswith("/login")


def test_logout_requires_post_with_csrf(client, make):
    """A link or an image on another site cannot sign a user out (GET is not allowed)."""
    user = make.user(make.org())
    login(client, user.email)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("token", [None, "forged-token", "Ijk3ZjQ.bad.signature"])
def test_login_without_a_valid_csrf_token_is_refused(client, make, token):
    """A forged or missing CSRF token answers 400 and signs nobody in."""
    user = make.user(make.org())
    client.get("/login")
    data = {"email": user.email, "password": PASSWORD}
    if token:
        data["csrf_token"] = token
    response = client.post("/login", data=data)
    assert response.status_code == 400
    assert "did not come from this site" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_csrf_header_is_accepted_for_htmx_and_json(client, make):
    """htmx and JSON clients send the token in X-CSRFToken instead of a form field."""
    user = make.user(make.org())
    login(client, user.email)
    token = csrf_token(client, "/")
    assert client.post("/logout", headers={"X-CSRFToken": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_security_headers_on_every_response(client):
    """CSP without inline script, no framing, no sniffing, no referrer; on pages and errors alike."""
    for path in ("/login", "/no-such-page", "/transparency"):
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"


def test_templates_carry_no_inline_script(client, make):
    user = make.user(make.org("city_office"), role="org_admin", portal_admin=True)
    login(client, user.email)
    for path in ("/", "/account", "/admin/organizations", "/admin/zones", "/transparency"):
        body = client.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", body), path
        assert not re.search(r"\son[a-z]+=", body), path


def test_signed_in_pages_are_not_cached(client, make):
    user = make.user(make.org())
    login(client, user.email)
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_production_cookie_is_host_prefixed_secure_and_pages_send_hsts(database_url, tmp_path, make):
    """Outside development the session cookie is __Host-, Secure, HttpOnly, SameSite=Lax; HSTS is sent."""
    user = make.user(make.org("city_office"))  # no second factor: the password alone opens the session
    app = make_test_app(database_url, tmp_path, PORTAL_ENV="production")
    client = app.test_client()
    page = client.get("/login", base_url="https://portal.example")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True)).group(1)
    response = client.post("/login", base_url="https://portal.example",
                           headers={"Referer": "https://portal.example/login"},
                           data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    cookie = next(v for k, v in response.headers.items() if k == "Set-Cookie" and "__Host-portal_session" in v)
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "Domain" not in cookie
    home = client.get("/", base_url="https://portal.example")
    assert home.status_code == 200
    assert home.headers["Strict-Transport-Security"].startswith("max-age=")
    assert home.headers["Cache-Control"] == "no-store"
    app.extensions["portal.db"].dispose()


def test_login_redirects_visitors_and_unknown_urls_answer_404(client):
    """A known URL that needs a login redirects; an unknown one answers 404 to everyone."""
    response = client.get("/admin/organizations")
    assert response.status_code == 302 and response.location.startswith("/login")
    assert client.get("/admin/nothing-here").status_code == 404


@pytest.mark.parametrize("target, expected", [("/admin/zones", "/admin/zones"), ("//evil.test/x", "/"),
                                              ("https://evil.test/", "/"), ("/\\evil.test", "/")])
def test_login_returns_to_the_requested_page_but_never_off_site(client, make, target, expected):
    """After login the user returns to the page that asked for it; another site is never a target."""
    user = make.user(make.org())
    token = csrf_token(client)
    response = client.post("/login", query_string={"next": target},
                           data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302 and response.location == "/login/code"  # the target waits for the code
    response = submit_code(client, "/login/code", second_factor_code(client.application, user.email))
    assert response.status_code == 302 and response.location == expected


def test_login_logs_carry_no_email_or_password(client, make, caplog):
    """Log lines name users by opaque id only."""
    user = make.user(make.org())
    with caplog.at_level("DEBUG"):
        login(client, user.email, "the wrong password here")
        login(client, "ghost@example.test", "another wrong one!!")
        login(client, user.email)
    text = caplog.text
    assert "login failed" in text and str(user.id) in text
    for secret in (user.email, "ghost@example.test", "the wrong password here", PASSWORD):
        assert secret not in text


def test_sign_out_everywhere_ends_every_session_of_the_account(app, client, make):
    """One device signs out everywhere: the other device's session is gone too."""
    user = make.user(make.org())
    login(client, user.email)
    phone = app.test_client()
    login(phone, user.email)
    token = csrf_token(client, "/account")
    assert client.post("/account/sign-out-everywhere", data={"csrf_token": token}).status_code == 303
    for each in (client, phone):
        response = each.get("/")
        assert response.status_code == 302 and response.location.startswith("/login")
    assert phone.post("/account/sign-out-everywhere").status_code == 400  # no token, no session


@pytest.mark.parametrize("column, age", [("last_seen_at", {"minutes": 16}), ("created_at", {"hours": 13})])
def test_idle_and_absolute_timeouts_end_the_session(app, client, make, column, age):
    """15 minutes without a request, or 12 hours after sign-in, and the session is over."""
    from datetime import timedelta

    from portal.db import utcnow
    user = make.user(make.org())
    login(client, user.email)
    assert client.get("/").status_code == 200
    with app.app_context():
        db = get_session()
        for row in db.query(UserSession).filter_by(user_id=user.id):
            setattr(row, column, utcnow() - timedelta(**age))
        db.commit()
    response = client.get("/")
    assert response.status_code == 302 and response.location.startswith("/login")
    with app.app_context():
        assert get_session().query(UserSession).filter_by(user_id=user.id).count() == 0
