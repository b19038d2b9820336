"""Single sign-on in Chromium: from the portal's login page through a real OpenID provider's login
page (oidc-provider on loopback) and back to the portal's home; and a sign-in cancelled there.

The provider and the portal both live on 127.0.0.1 and cookies ignore the port: the portal's
cookie is portal_session, the provider's are op_*. A city office's staff account signs in, an
account kind that needs no second factor, so the round trip ends on the home page.
"""
from __future__ import annotations

import dataclasses
import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from portal.auth import sso
from portal.db import get_session
from tests.browser.conftest import HOME_HEADING, path_of
from tests.oidc_fixtures import ClientSpec, ProviderFactory

DOMAIN = "ovp.city.test"
WEB_FONTS = re.compile(r"\.(woff2?|ttf|otf|eot)(\?|$)|fonts\.(googleapis|gstatic)\.com")


@pytest.fixture
def portal_url(app, live_server):
    """The provider sends the browser back to PORTAL_BASE_URL/sso/callback: the live server's port."""
    app.config["PORTAL"] = dataclasses.replace(app.config["PORTAL"], base_url=live_server)
    return live_server


@pytest.fixture
def idp(tmp_path, portal_url):
    factory = ProviderFactory(tmp_path)
    provider = factory.start([ClientSpec("peace-portal", "peace-portal-secret-" + "p" * 32,
                                         (portal_url + "/sso/callback",))])
    provider.accounts.add("casey", f"casey@{DOMAIN}", password="casey at the provider")
    yield provider
    factory.stop_all()


@pytest.fixture
def city_office(app, make, idp):
    org = make.org("city_office", name="Office of Violence Prevention")
    user = make.user(org, "staff", email=f"casey@{DOMAIN}")
    with app.app_context():
        db = get_session()
        sso.configure(db, app.extensions["portal.keyring"], org, idp.issuer, "peace-portal",
                      "peace-portal-secret-" + "p" * 32, [DOMAIN], allow_http_loopback=True)
        db.commit()
    return org, user


@pytest.fixture
def page(page: Page) -> Page:
    page.route(WEB_FONTS, lambda route: route.abort())  # no web fonts: nothing leaves loopback
    return page


def blocking(page: Page) -> list[str]:
    results = Axe().run(page)
    assert "violations" in results.response
    return [v["id"] for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]


def choose_organization(page: Page) -> None:
    """Login page → "Sign in with your organization's account" → work e-mail → the organization's link."""
    page.goto("/login")
    page.get_by_role("link", name="Sign in with your organization's account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in with your organization's account")
    assert blocking(page) == []
    page.get_by_label("Work e-mail").fill(f"casey@{DOMAIN}")
    page.get_by_role("button", name="Continue").click()
    link = page.get_by_role("link", name="Continue with Office of Violence Prevention")
    expect(link).to_be_visible()
    assert blocking(page) == []
    link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Test identity provider: sign in")


def test_sso_round_trip_through_the_providers_login_page(page: Page, app, city_office, idp):
    """Chromium signs in at the real provider and lands on the portal's home, signed in as the account."""
    org, user = city_office
    choose_organization(page)
    assert page.url.startswith(idp.url + "/interaction/")
    page.get_by_label("Username").fill("casey")
    page.get_by_label("Password").fill("casey at the provider")
    page.get_by_role("button", name="Sign in", exact=True).click()

    page.wait_for_url(lambda url: path_of(page) == "/" and url.startswith(app.config["PORTAL"].base_url))
    expect(page.get_by_role("heading", level=1)).to_have_text(HOME_HEADING)
    names = {c["name"] for c in page.context.cookies()}
    assert "portal_session" in names and {"op_session"} <= names  # both kept, neither clobbered the other
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


def test_cancelling_at_the_provider_shows_the_failure_page(page: Page, city_office, idp):
    """Cancel at the provider: back at the portal, a plain failure page (accessible), still signed out."""
    choose_organization(page)
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Single sign-on did not complete")
    expect(page.get_by_text("Single sign-on did not complete; ask your administrator.")).to_be_visible()
    assert path_of(page) == "/sso/callback"
    assert blocking(page) == []
    page.goto("/")
    assert path_of(page) == "/login"
