"""Forgot password in a real browser: the login page's link, the mail (aiosmtpd on loopback), the
new password, signing in with it; every page on the way passes axe-core."""
from __future__ import annotations

import email
import email.policy
import re
import time

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.browser.conftest import path_of, sign_in
from tests.browser.test_accessibility import blocking_violations, describe
from tests.conftest import PASSWORD, Inbox, _empty_all_tables, make_test_app

BASE = "https://portal.example"
NEW_PASSWORD = "lanterns over the harbour"
LINK = re.compile(r"https://portal\.example(/password/reset\?token=[A-Za-z0-9_-]{43})")


@pytest.fixture
def app(database_url, tmp_path, smtp):
    """The portal with a mail server: overrides tests/conftest.py's `app` for this module."""
    controller, _ = smtp
    app = make_test_app(database_url, tmp_path, PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=str(controller.port),
                        PORTAL_BASE_URL=BASE)
    yield app
    app.extensions["portal.db"].dispose()
    _empty_all_tables(database_url)


@pytest.fixture(scope="module")
def axe():
    return Axe()


def no_blocking_violations(axe: Axe, page: Page, where: str) -> None:
    violations = blocking_violations(axe, page)
    assert not violations, f"axe on {where}:\n" + describe(violations)


def wait_for_mail(inbox: Inbox, address: str, seconds: float = 10) -> email.message.EmailMessage:
    """The mail leaves after the response, from the live server's thread: wait for it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for recipients, content in inbox.messages:
            if recipients == [address]:
                return email.message_from_string(content, policy=email.policy.default)
        time.sleep(0.05)
    raise AssertionError(f"no mail for the account within {seconds} s")


def test_forgotten_password_is_replaced_through_the_mailed_link(page: Page, axe, smtp, make):
    """Login page → "Forgot your password?" → e-mail → the same answer page → the mail's link →
    a common password refused with its reason → a good one → signed in with it. The token leaves
    the address bar as soon as the link is opened; a second visit of the link is refused."""
    _, inbox = smtp
    user = make.user(make.org("city_office"))

    page.goto("/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Forgot your password?")
    no_blocking_violations(axe, page, "/password/forgot")
    page.get_by_label("E-mail").fill(user.email)
    page.get_by_role("button", name="Send the link").click()
    page.wait_for_url(lambda url: url.endswith("/password/forgot/sent"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your e-mail")
    expect(page.get_by_text("If an account exists for that address, we have sent a link")).to_be_visible()
    no_blocking_violations(axe, page, "/password/forgot/sent")

    mail = wait_for_mail(inbox, user.email)
    link = LINK.search(mail.get_content()).group(1)
    page.goto(link)
    page.wait_for_url(lambda url: url.endswith("/password/new"))
    assert "token" not in page.url
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    no_blocking_violations(axe, page, "/password/new")

    page.get_by_label("New password").fill("Password1234")
    page.get_by_label("The same password again").fill("Password1234")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_text("on a list of commonly used passwords")).to_be_visible()
    expect(page.get_by_label("New password")).to_have_attribute("aria-invalid", "true")
    no_blocking_violations(axe, page, "/password/new with an error")

    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("The same password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    page.wait_for_url(lambda url: url.endswith("/login"))
    expect(page.get_by_role("status")).to_contain_text("Your new password is set")

    assert sign_in(page, user.email, PASSWORD, expect_success=False).status == 401
    sign_in(page, user.email, NEW_PASSWORD)
    assert path_of(page) == "/"

    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("This link cannot be used")
    expect(page.get_by_text("already been used")).to_be_visible()
    no_blocking_violations(axe, page, "a used link")
