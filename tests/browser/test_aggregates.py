"""The city dashboard and the police releases in a real browser: they render, and axe-core
finds no serious or critical violation."""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from portal.db import get_session, utcnow
from portal.demo_history import load_demo_referrals
from portal.releases.publish import publish_due
from tests.browser.conftest import sign_in
from tests.browser.test_accessibility import blocking_violations, describe


@pytest.fixture
def history(app, demo):
    """A year and a half of referral history through the services, and its releases published."""
    with app.app_context():
        db = get_session()
        load_demo_referrals(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"], 150, seed=5)
        released = publish_due(db, app.extensions["portal.catalog"], utcnow())
        assert released, "the history should allow releases"
    return app


@pytest.fixture(scope="module")
def axe():
    from axe_playwright_python.sync_playwright import Axe
    return Axe()


def test_city_dashboard_renders_charts_and_tables_and_passes_axe(page: Page, axe, history):
    """The city office sees its dashboard: SVG charts with text alternatives and data tables."""
    sign_in(page, "city@demo.test")
    page.get_by_role("link", name="Dashboard").first.click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert page.locator("svg[role=img]").count() >= 3
    assert page.locator("table caption").count() >= 3
    violations = blocking_violations(axe, page)
    assert not violations, "axe on the city dashboard:\n" + describe(violations)
    page.goto("/aggregates/ledger")
    expect(page.get_by_role("heading", level=1)).to_have_text("Release ledger")
    violations = blocking_violations(axe, page)
    assert not violations, "axe on the release ledger:\n" + describe(violations)


def test_police_see_published_tables_with_suppression_and_pass_axe(page: Page, axe, history):
    """Police reach the published figures from their home page; small numbers show as <k."""
    sign_in(page, "police@demo.test")
    page.get_by_role("link", name="Published figures").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Published figures")
    violations = blocking_violations(axe, page)
    assert not violations, "axe on the police index:\n" + describe(violations)
    page.get_by_role("link", name="Referrals per quarter by zone").click()
    expect(page.locator("table tbody tr").first).to_be_visible()
    assert "<11" in page.locator("table").inner_text()
    violations = blocking_violations(axe, page)
    assert not violations, "axe on a police table:\n" + describe(violations)
    assert page.goto("/dashboards/city").status == 403
