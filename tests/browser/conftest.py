"""Browser tests: Debian's Chromium driven by Playwright against the real app on loopback.

Everything in this folder is marked `browser`, runs on SQLite only (the backends are covered by
the rest of the suite; here the browser is what is under test), and is skipped when no Chromium
is installed -- which tests/conftest.py turns into a failure when CI=true.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from portal import migrate
from portal.db import get_session
from portal.demo import USERS, enroll_demo_users, load_demo_data
from tests.conftest import PASSWORD, second_factor_code, totp_code

HERE = os.path.dirname(os.path.abspath(__file__))

# (e-mail, display name) of every demo account, in the order portal.demo lists them.
DEMO_USERS = [(email, name) for email, name, *_ in USERS]
DEMO_EMAILS = [email for email, _ in DEMO_USERS]
# The second factor every demo account gets in `demo` (PORTAL_DEMO_TOTP_SECRET, in effect).
DEMO_TOTP_SECRET = pyotp.random_base32()

HOME_HEADING = re.compile(r"^Welcome, .+")

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


# -- every test here is a browser test ---------------------------------------------------------
def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.browser)


# -- SQLite only ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    """Overrides the backend-parametrized fixture of tests/conftest.py: one migrated SQLite file.

    Not requesting the parent fixture drops its ("sqlite", "postgresql") parametrization for
    every test in this folder; `app` (tests/conftest.py) picks this one up, and still empties
    the tables after each test.
    """
    url = f"sqlite:///{tmp_path_factory.mktemp('browser-db') / 'portal.sqlite3'}"
    migrate.upgrade(url)
    return url


# -- Chromium ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium binary (apt-get install chromium); never `playwright install`")
    return {**browser_type_launch_args, "executable_path": path, "args": LAUNCH_ARGS}


# -- the app on a real socket --------------------------------------------------------------------
# The app the live server of the running test serves: sign_in reads second-factor secrets from it.
SERVED: dict = {}


@pytest.fixture
def live_server(app):
    """Serve the test's `app` on 127.0.0.1 (a free port); yield its base URL."""
    SERVED["app"] = app
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def base_url():
    """No session-wide base URL: each test's live server sets its own in browser_context_args.

    This also shadows pytest-playwright's own `base_url`, which it defines as an instance method
    of a plugin class when pytest-base-url is absent; pytest 9 raises PytestRemovedIn10Warning
    for that when the fixture runs, and filterwarnings=error makes it an error.
    """
    return None


@pytest.fixture
def browser_context_args(browser_context_args, live_server):
    """Every page talks to the live server (relative URLs work) and is closed before it stops.

    Depending on `live_server` here orders the teardown: pytest-playwright closes the browser
    context first, then the server shuts down, then `app` empties the database.
    """
    return {**browser_context_args, "base_url": live_server}


@pytest.fixture
def demo(app):
    """The demo organizations and accounts, every account with the password tests.conftest.PASSWORD
    and a second factor whose secret is DEMO_TOTP_SECRET (as `portal demo-data` with
    PORTAL_DEMO_TOTP_SECRET set)."""
    with app.app_context():
        db = get_session()
        created, generated = load_demo_data(db, PASSWORD)
        enroll_demo_users(db, app.extensions["portal.keyring"], DEMO_TOTP_SECRET)
        db.commit()
    assert sorted(created) == sorted(DEMO_EMAILS)
    assert generated is None
    return dict(DEMO_USERS)


# -- signing in through the real form ------------------------------------------------------------
def _posted_to(path: str):
    return lambda r: r.request.method == "POST" and urlsplit(r.url).path == path


def sign_in(page: Page, email: str, password: str = PASSWORD, *, expect_success: bool = True):
    """Open /login, type the credentials, press "Sign in"; return the response to that POST.

    An account with a second factor then gets a fresh code typed on /login/code (the response
    returned is that POST's); one that must set one up first goes through /login/enroll with the
    secret read off the page, and continues past its recovery codes. On success (the default)
    also wait until the browser has followed the redirect to the home page and shows its
    "Welcome, ..." heading.
    """
    page.goto("/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    with page.expect_response(_posted_to("/login")) as posted:
        page.get_by_role("button", name="Sign in").click()
    response = posted.value
    step = urlsplit(response.header_value("location") or "").path if response.status == 302 else None
    if step == "/login/code":
        page.wait_for_url(lambda url: urlsplit(url).path == step)
        page.locator("#code").fill(second_factor_code(SERVED["app"], email))
        with page.expect_response(_posted_to(step)) as posted:
            page.get_by_role("button", name="Continue").click()
        response = posted.value
    elif step == "/login/enroll":
        page.wait_for_url(lambda url: urlsplit(url).path == step)
        page.locator("#code").fill(totp_code(page.locator("#totp-secret").inner_text().replace(" ", "")))
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
        with page.expect_response(lambda r: urlsplit(r.url).path == "/") as posted:
            page.get_by_role("link", name="I have saved them, continue").click()
        response = posted.value  # the home page: the enrollment's own answer was the page of codes
    if expect_success:
        assert response.status == (200 if step == "/login/enroll" else 302), \
            f"sign-in of {email} answered {response.status}"
        page.wait_for_url(lambda url: urlsplit(url).path == "/")
        expect(page.get_by_role("heading", level=1)).to_have_text(HOME_HEADING)
    else:
        page.wait_for_load_state()
    return response


def path_of_url(url: str) -> str:
    """The path of a URL (the host and port change with every test)."""
    return urlsplit(url).path


def path_of(page: Page) -> str:
    """The path of the page's current URL."""
    return path_of_url(page.url)
