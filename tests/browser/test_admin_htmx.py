"""An organization admin manages accounts in place with htmx; the CSRF token rides in hx-headers."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.auth.sessions import close_all_sessions
from portal.db import get_session
from portal.models import Organization, User
from tests.browser.conftest import path_of, path_of_url, sign_in

ADMIN = "cvi@demo.test"
ORG = "Northside Peacekeepers"


@pytest.fixture
def colleague(app, demo, make):
    """A second, staff account in the demo admin's organization, made through the real service."""
    with app.app_context():
        org = get_session().scalar(select(Organization).where(Organization.name == ORG))
    assert org is not None
    return make.user(org, "staff", email="colleague@demo.test")


def stored(app, user_id) -> User:
    with app.app_context():
        user = get_session().get(User, user_id)
        assert user is not None
        return user


def open_my_organization(page: Page) -> None:
    sign_in(page, ADMIN)
    page.get_by_role("link", name="My organization").click()
    page.wait_for_url(lambda url: path_of_url(url).startswith("/admin/organizations/"))
    expect(page.get_by_role("heading", level=1)).to_have_text(ORG)
    page.wait_for_function("() => window.htmx !== undefined")
    # A full page load would lose this; an htmx swap keeps it.
    page.evaluate("() => { window.__noFullLoad = true; }")


def mark_row(page: Page, row_id: str) -> None:
    """Tag the row element now on the page; a swapped-in row will not carry the tag."""
    page.locator(f"#{row_id}").evaluate("el => el.setAttribute('data-before-swap', '1')")


def assert_swapped_in_place(page: Page, url_before: str, row_id: str) -> None:
    assert page.url == url_before
    assert page.evaluate("() => window.__noFullLoad === true"), "the page was reloaded, not swapped"
    expect(page.locator(f"#{row_id}")).to_have_count(1)
    expect(page.locator(f"#{row_id}[data-before-swap]")).to_have_count(0)


def test_org_admin_changes_role_and_deactivates_in_place(page: Page, app, colleague):
    """The Northside org admin changes a colleague's role and deactivates the account from "My
    organization": each htmx post carries the page's CSRF token in the X-CSRFToken header (the
    forms' hidden token fields are removed first, so the header alone must pass the CSRF check),
    the row is swapped in place without a page load, and the database holds the change."""
    open_my_organization(page)
    url = page.url
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token and json.loads(page.locator("body").get_attribute("hx-headers")) == {"X-CSRFToken": token}

    row_id = f"user-{colleague.id}"
    row = page.locator(f"#{row_id}")
    expect(row).to_contain_text(colleague.email)
    expect(row.locator("option[selected]")).to_have_text("Staff")
    expect(row.get_by_role("button", name="Deactivate")).to_have_count(1)

    # -- change the role ----------------------------------------------------------------------
    row.locator("input[name=csrf_token]").evaluate_all("els => els.forEach(e => e.remove())")
    mark_row(page, row_id)
    row.get_by_label(f"Role of {colleague.display_name}").select_option("supervisor")
    with page.expect_response(lambda r: r.url.endswith(f"/admin/users/{colleague.id}/role")) as info:
        row.get_by_role("button", name="Change role").click()
    response = info.value
    headers = response.request.all_headers()
    assert response.request.method == "POST"
    assert headers.get("hx-request") == "true"
    assert headers.get("x-csrftoken") == token
    assert "csrf_token=" not in (response.request.post_data or "")
    assert response.status == 200

    assert_swapped_in_place(page, url, row_id)
    # The `selected` attribute is rendered by the server from the stored role; the user's choice
    # in the old <select> only changed its property, so this proves the row came back updated.
    expect(row.locator("option[selected]")).to_have_text("Supervisor")
    expect(row.get_by_role("alert")).to_have_count(0)
    assert stored(app, colleague.id).role == "supervisor"

    # -- deactivate -----------------------------------------------------------------------------
    row.locator("input[name=csrf_token]").evaluate_all("els => els.forEach(e => e.remove())")
    mark_row(page, row_id)
    with page.expect_response(lambda r: r.url.endswith(f"/admin/users/{colleague.id}/active")) as info:
        row.get_by_role("button", name="Deactivate").click()
    response = info.value
    assert response.request.all_headers().get("x-csrftoken") == token
    assert response.status == 200

    assert_swapped_in_place(page, url, row_id)
    expect(row).to_contain_text("deactivated")
    expect(row.get_by_role("button", name="Reactivate")).to_have_count(1)
    expect(row.get_by_role("button", name="Deactivate")).to_have_count(0)
    expect(row.get_by_role("alert")).to_have_count(0)
    user = stored(app, colleague.id)
    assert user.active is False
    assert user.role == "supervisor"
    assert path_of(page) == f"/admin/organizations/{user.organization_id}"


def test_htmx_post_without_csrf_token_changes_nothing(page: Page, app, colleague):
    """Control: with the token taken out of both hx-headers and the form, the same htmx post is
    refused (400) and the role stays as it was -- so the test above proves the header. The page
    reloads (HX-Refresh) so that the user sees where things stand instead of a silent no-op."""
    open_my_organization(page)
    url = page.url
    page.evaluate("() => document.body.removeAttribute('hx-headers')")

    row_id = f"user-{colleague.id}"
    row = page.locator(f"#{row_id}")
    row.locator("input[name=csrf_token]").evaluate_all("els => els.forEach(e => e.remove())")
    mark_row(page, row_id)
    row.get_by_label(f"Role of {colleague.display_name}").select_option("org_admin")
    with page.expect_response(lambda r: r.url.endswith(f"/admin/users/{colleague.id}/role")) as info:
        row.get_by_role("button", name="Change role").click()
    response = info.value
    assert "x-csrftoken" not in response.request.all_headers()
    assert response.status == 400
    assert response.headers.get("hx-refresh") == "true"

    page.wait_for_function("() => window.__noFullLoad !== true")  # a full reload happened
    assert page.url == url
    expect(page.locator(f"#{row_id}")).to_contain_text("Staff")
    assert stored(app, colleague.id).role == "staff"


def test_htmx_action_after_session_ended_goes_to_login(page: Page, app, colleague):
    """When the server-side session has ended (idle timeout, deactivation, a role change by another
    admin), an htmx action takes the browser to the login page; it does not swap the login page
    into the table row, and it changes nothing."""
    open_my_organization(page)
    with app.app_context():
        db = get_session()
        close_all_sessions(db, db.scalar(select(User).where(User.email == ADMIN)))
        db.commit()

    row = page.locator(f"#user-{colleague.id}")
    row.get_by_label(f"Role of {colleague.display_name}").select_option("supervisor")
    with page.expect_response(lambda r: r.url.endswith(f"/admin/users/{colleague.id}/role")):
        row.get_by_role("button", name="Change role").click()

    assert stored(app, colleague.id).role == "staff"
    page.wait_for_url(lambda url: path_of_url(url) == "/login", timeout=5000)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.locator("#email")).to_have_count(1)
