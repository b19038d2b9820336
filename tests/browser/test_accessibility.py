"""axe-core on the pages everyone sees: no serious or critical accessibility violation."""
from __future__ import annotations

import json

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.browser.conftest import DEMO_EMAILS, HOME_HEADING, sign_in

BLOCKING = {"serious", "critical"}


@pytest.fixture(scope="module")
def axe():
    return Axe()


def blocking_violations(axe: Axe, page: Page) -> list[dict]:
    results = axe.run(page)
    assert "violations" in results.response, results.response  # axe really ran
    return [v for v in results.response["violations"] if v.get("impact") in BLOCKING]


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} -- {v['helpUrl']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {json.dumps(node['target'])}: {node.get('failureSummary', '').replace(chr(10), ' ')}")
    return "\n".join(lines)


def test_login_page_has_no_serious_violations(page: Page, axe, live_server):
    """The login page passes axe-core with no serious or critical violation."""
    page.goto("/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    violations = blocking_violations(axe, page)
    assert not violations, "axe on /login:\n" + describe(violations)


def test_login_page_with_error_has_no_serious_violations(page: Page, axe, demo):
    """The login page showing the failed-sign-in error passes axe-core too."""
    sign_in(page, "cvi@demo.test", "not the password at all", expect_success=False)
    expect(page.get_by_role("alert")).to_be_visible()
    violations = blocking_violations(axe, page)
    assert not violations, "axe on /login after a failed sign-in:\n" + describe(violations)


@pytest.mark.parametrize("email", DEMO_EMAILS)
def test_home_page_has_no_serious_violations(page: Page, axe, demo, email):
    """Every demo account's home page passes axe-core with no serious or critical violation."""
    sign_in(page, email)
    expect(page.get_by_role("heading", level=1)).to_have_text(HOME_HEADING)
    violations = blocking_violations(axe, page)
    assert not violations, f"axe on the home page of {email}:\n" + describe(violations)


def test_axe_would_report_a_serious_violation(page: Page, axe, live_server):
    """Control: the check above can fail -- an image without alt text on the page is reported."""
    page.goto("/login")
    page.evaluate("""() => { const img = document.createElement('img'); img.src = '/static/none.png';
                             document.querySelector('main').appendChild(img); }""")
    violations = blocking_violations(axe, page)
    assert any(v["id"] == "image-alt" for v in violations), describe(violations)
