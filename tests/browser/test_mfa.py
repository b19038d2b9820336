"""Two-step sign-in in a real browser: enrollment from the QR page, sign-in with a code, the
account's page and the step-up, each passing axe-core."""
from __future__ import annotations

import time

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from portal.auth import mfa
from tests.browser.conftest import HOME_HEADING, path_of_url, sign_in
from tests.browser.test_accessibility import blocking_violations, describe
from tests.conftest import PASSWORD, second_factor_code, totp_code


@pytest.fixture(scope="module")
def axe():
    return Axe()


def assert_accessible(axe: Axe, page: Page, where: str) -> None:
    violations = blocking_violations(axe, page)
    assert not violations, f"axe on {where}:\n" + describe(violations)


def test_enroll_from_the_qr_page_then_sign_out_and_sign_in_with_a_code(page: Page, axe, app, make, live_server):
    """A CVI team lead without a second factor: after the password comes the QR page; the key read
    off the page gives the code that confirms it (a wrong one first is refused, in an alert); the
    recovery codes show once; after signing out, the next sign-in asks for a code and lets them in."""
    user = make.user(make.org("cvi_team"), "org_admin", mfa=False)
    page.goto("/login")
    page.locator("#email").fill(user.email)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: path_of_url(url) == "/login/enroll")
    expect(page.get_by_role("heading", level=1)).to_have_text("Set up two-step sign-in")
    expect(page.get_by_role("img", name="QR code to scan with your authenticator app")).to_be_visible()
    assert_accessible(axe, page, "the enrollment page")

    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    wrong = pyotp.TOTP(secret).generate_otp(int(time.time()) // mfa.STEP_SECONDS + 5)
    page.get_by_label("Code from the app").fill(wrong)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("alert")).to_contain_text("That code did not match")
    expect(page.get_by_label("Code from the app")).to_have_attribute("aria-invalid", "true")
    assert page.locator("#totp-secret").inner_text().replace(" ", "") == secret  # the same QR code again
    assert_accessible(axe, page, "the enrollment page with an error")

    page.get_by_label("Code from the app").fill(totp_code(secret))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
    expect(page.get_by_role("list", name="Recovery codes").get_by_role("listitem")).to_have_count(10)
    assert_accessible(axe, page, "the recovery codes")
    page.get_by_role("link", name="I have saved them, continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(HOME_HEADING)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(lambda url: path_of_url(url) == "/login")
    page.locator("#email").fill(user.email)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: path_of_url(url) == "/login/code")
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    assert_accessible(axe, page, "the code page")
    page.get_by_label("Code").fill("000000" if second_factor_code(app, user.email) != "000000" else "111111")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("That code did not work")
    assert_accessible(axe, page, "the code page with an error")
    page.get_by_label("Code").fill(second_factor_code(app, user.email))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(lambda url: path_of_url(url) == "/")
    expect(page.get_by_role("heading", level=1)).to_have_text(HOME_HEADING)


def test_account_page_and_step_up_pass_axe_and_the_step_up_leads_to_the_export(page: Page, axe, app, make,
                                                                                 live_server):
    """The account's two-step page and the step-up page pass axe; a stale step-up sends the export
    link to the step-up page, and a code brings the CSV."""
    user = make.user(make.org("city_office"), "org_admin")
    sign_in(page, user.email)
    page.goto("/account")
    page.get_by_role("link", name="Two-step sign-in (authenticator app and recovery codes)").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Two-step sign-in")
    assert_accessible(axe, page, "the account's two-step page")

    from datetime import timedelta

    from sqlalchemy import update

    from portal.db import get_session, utcnow
    from portal.models import UserSession
    with app.app_context():  # the code typed at sign-in is now six minutes old
        db = get_session()
        db.execute(update(UserSession).where(UserSession.user_id == user.id)
                   .values(mfa_verified_at=utcnow() - timedelta(minutes=6)))
        db.commit()
    page.goto("/dashboards/city")
    page.locator("a[href^='/dashboards/city/export/by-zone.csv']").first.click()
    page.wait_for_url(lambda url: path_of_url(url) == "/step-up")
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it is you")
    assert_accessible(axe, page, "the step-up page")
    page.get_by_label("Code").fill(second_factor_code(app, user.email))
    with page.expect_download() as download:
        page.get_by_role("button", name="Confirm").click()
    assert download.value.suggested_filename.startswith("city-by-zone-")
