"""Signing in and out through the real login form, in a real browser, for every demo account."""
from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import DEMO_EMAILS, path_of, path_of_url, sign_in
from tests.conftest import PASSWORD

GENERIC_FAILURE = "That e-mail and password do not match an active account."


@pytest.mark.parametrize("email", DEMO_EMAILS)
def test_demo_user_signs_in_sees_home_and_signs_out(page: Page, demo, email):
    """Every demo account signs in through the form, lands on its own home ("Welcome, <name>"),
    and "Sign out" ends the session and lands on the login page."""
    response = sign_in(page, email)

    assert response.status == 302 and response.headers["location"] == "/"
    assert path_of(page) == "/"
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {demo[email]}")
    expect(page.locator('meta[name="csrf-token"]')).to_have_attribute("content", re.compile(r".{20,}"))

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(lambda url: path_of_url(url) == "/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)

    # The session is really gone: the home page now sends the visitor back to the login form.
    page.goto("/")
    assert path_of(page) == "/login"
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


def test_police_home_offers_no_way_to_referrals(page: Page, demo):
    """A police partner's home page has no link that leads to referrals, and a referral URL typed
    by hand answers the 404 page (not a referral, not a 403 that confirms existence)."""
    sign_in(page, "police@demo.test")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {demo['police@demo.test']}")
    assert "referral" not in page.url.lower()

    links = page.locator("a").evaluate_all(
        "els => els.map(a => ({href: a.getAttribute('href') || '', abs: a.href, text: a.textContent}))")
    assert len(links) >= 3, links  # the nav and footer links are there: the check below has teeth
    offending = [link for link in links
                 if "referral" in (link["href"] + " " + link["abs"] + " " + link["text"]).lower()]
    assert not offending, f"links on the police home that point at referrals: {offending}"

    for path in (f"/referrals/{uuid.uuid4()}", f"/referrals/{uuid.uuid4()}/contact"):
        response = page.goto(path)
        assert response is not None and response.status == 404, (path, response and response.status)
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        expect(page.locator("main")).to_contain_text("There is nothing here, or nothing you may see.")
        # still signed in: the 404 is the answer to the URL, not a lost session
        expect(page.get_by_role("button", name="Sign out")).to_have_count(1)


@pytest.mark.parametrize("email", ["cvi@demo.test", "nobody@demo.test"], ids=["wrong-password", "unknown-email"])
def test_failed_sign_in_shows_generic_error_and_stays_on_login(page: Page, demo, email):
    """A wrong password (or an unknown e-mail) shows the one generic error, answers 401, stays on
    /login and signs nobody in: the message does not tell which part was wrong."""
    response = sign_in(page, email, PASSWORD + " wrong", expect_success=False)

    assert response.status == 401
    assert path_of(page) == "/login"
    expect(page.get_by_role("alert")).to_have_text(GENERIC_FAILURE)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.locator("#password")).to_have_value("")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)

    page.goto("/")
    assert path_of(page) == "/login"
