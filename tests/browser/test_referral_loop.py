"""The closed referral loop in a real browser: a hospital sends with consent, the CVI team works
it, the hospital sees only status and outcome. Also: declining sends nothing, a validation error
keeps what was typed, the inbox refreshes itself, axe-core on the referral pages, police see none.
"""
from __future__ import annotations

import re
import uuid

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import func, select

from portal.db import get_session
from portal.models import Consent, ContactAttempt, Organization, Referral, User
from portal.referrals import service
from portal.referrals.inputs import parse_referral
from tests.browser.conftest import path_of, path_of_url, sign_in
from tests.browser.test_accessibility import blocking_violations, describe

HOSPITAL, CVI, POLICE = "hospital@demo.test", "cvi@demo.test", "police@demo.test"
NORTH = "Northside Peacekeepers"

# The person's details, with markup that must stay text everywhere it is shown.
NAME = "Jay Marlowe <img src=x onerror=window.__pwned=1>"
NOTE = "<script>window.__pwned=1</script> prefers afternoons"
PHONE_TYPED, PHONE_E164 = "(555) 234-5678", "+15552345678"
BEST_TIME, LANGUAGE = "Weekday evenings", "Tagalog"
CONTACT_NOTE = "Met him at the Riverview rec center; mentoring starts Tuesday"

# What the sending hospital must never see again once it has sent the referral.
PERSONAL = ["Jay Marlowe", "Marlowe", "234-5678", "2345678", "5552345678", "prefers afternoons", "__pwned",
            BEST_TIME, LANGUAGE, "Riverview rec center", "mentoring starts Tuesday"]

REFERRAL_URL = re.compile(r"^/referrals/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
CONSENT_RECIPIENTS = "Organizations the person agreed may receive their details"
PHONE_ERROR = "Enter a phone number such as (555) 123-4567 or +15551234567."


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def axe():
    return Axe()


def org_id(app, name: str) -> uuid.UUID:
    with app.app_context():
        org = get_session().scalar(select(Organization).where(Organization.name == name))
        assert org is not None, name
        return org.id


def count(app, model) -> int:
    with app.app_context():
        return get_session().scalar(select(func.count()).select_from(model))


def signed_in_page(new_context, email: str) -> Page:
    """A fresh browser context (its own cookies) signed in as `email`, recording console errors."""
    context: BrowserContext = new_context()
    page = context.new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    sign_in(page, email)
    return page


def assert_payload_inert(page: Page) -> None:
    """The markup in the name and the note was never run, and never even parsed as markup.

    The CSP (no inline scripts or handlers) would stop `window.__pwned` from being set even if the
    escaping failed, so the DOM is checked too: no <img src=x>, no script carrying the payload,
    and no CSP refusal in the console (which is what a parsed payload would cause).
    """
    assert page.evaluate("() => typeof window.__pwned") == "undefined", f"payload ran on {page.url}"
    assert page.locator('img[src="x"]').count() == 0, f"the name was parsed as HTML on {page.url}"
    assert page.evaluate("() => [...document.scripts].filter(s => s.textContent.includes('__pwned')).length") == 0
    refusals = [m for m in page.console_errors if "Content Security Policy" in m or "__pwned" in m]
    assert not refusals, f"a payload reached the browser as markup on {page.url}: {refusals}"


def assert_no_personal_details(page: Page, extra: list[str] = ()) -> None:
    """Neither the rendered text nor the HTML source holds any of the person's details."""
    text, html = page.locator("body").inner_text(), page.content()
    for secret in [*PERSONAL, *extra]:
        assert secret not in text, f"{secret!r} is shown on {page.url}"
        assert secret not in html, f"{secret!r} is in the HTML of {page.url}"


def open_new_referral(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New referral").click()
    page.wait_for_url(lambda url: path_of_url(url) == "/referrals/new")
    expect(page.get_by_role("heading", level=1)).to_have_text("New referral")
    page.wait_for_function("() => window.htmx !== undefined")


def choose_zone(page: Page, zone: str) -> None:
    """Pick the zone and wait for htmx to swap in the receiver list for it."""
    with page.expect_response(lambda r: path_of_url(r.url) == "/referrals/new/receivers") as info:
        page.get_by_label("Zone", exact=True).select_option(zone)
    response = info.value
    assert response.status == 200
    assert response.request.all_headers().get("hx-request") == "true"
    assert f"zone={zone}" in response.url


def fill_referral(page: Page, *, name: str = NAME, phone: str = PHONE_TYPED, note: str = NOTE) -> None:
    """Fill every field of the form for a referral to Northside (zone N1), consent given."""
    page.get_by_label("Yes, they agreed").check()
    page.get_by_role("textbox", name="Preferred name", exact=True).fill(name)
    page.get_by_role("textbox", name="Phone", exact=True).fill(phone)
    page.get_by_role("textbox", name="Best time to reach", exact=True).fill(BEST_TIME)
    page.get_by_role("textbox", name="Language", exact=True).fill(LANGUAGE)
    page.get_by_label("Safe to text").check()
    page.get_by_label("Age band").select_option(label="18–24")
    choose_zone(page, "N1")
    page.get_by_label("Referral reason").select_option(label="Gunshot wound")
    page.get_by_label("Intensive mentoring").check()
    page.get_by_label("Conflict mediation").check()
    page.get_by_label("Urgency").select_option(label="Urgent (retaliation risk)")
    page.get_by_label("Short note for the receiving team (optional)").fill(note)
    page.locator("#receivers").get_by_role("radio", name=re.compile(rf"^{NORTH}\b")).check()
    page.get_by_label("How consent was given").select_option(label="Verbal")
    page.get_by_role("group", name=CONSENT_RECIPIENTS).get_by_label(NORTH, exact=True).check()


def send(page: Page, expected_status: int = 303):
    with page.expect_response(lambda r: r.request.method == "POST" and path_of_url(r.url) == "/referrals/new") as info:
        page.get_by_role("button", name="Send referral").click()
    assert info.value.status == expected_status, info.value.status
    page.wait_for_load_state()
    return info.value


def referral_id_of(page: Page) -> uuid.UUID:
    match = REFERRAL_URL.match(path_of(page))
    assert match, f"not on a referral page: {page.url}"
    return uuid.UUID(match.group(1))


def send_through_service(app, zone: str = "N1", name: str = "Rae Polled") -> uuid.UUID:
    """The hospital's referral to Northside, created in-process through the real service."""
    north = org_id(app, NORTH)
    with app.app_context():
        db = get_session()
        nurse = db.scalar(select(User).where(User.email == HOSPITAL))
        ctx = service.Context(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"], nurse)
        data = parse_referral({
            "receiver_org_id": str(north), "person": {"preferred_name": name, "phone": "5552345678"},
            "age_band": "25_34", "zone": zone, "reason": "assault", "services": ["care_management"],
            "note": "Polled into the inbox",
            "consent": {"method": "written", "recipient_org_ids": [str(north)],
                        "data_categories": ["contact", "note"]}}, ctx.now)
        referral = service.create_referral(ctx, data)
        db.commit()
        return referral.id


def dd_after(page: Page, term: str):
    return page.locator(f'dt:text-is("{term}") + dd')


# -- 1. the whole loop -----------------------------------------------------------------------
def test_closed_loop_from_hospital_to_cvi_and_back(new_context, app, demo):
    """The closed loop, end to end, in two browsers. The hospital fills the form (choosing zone N1
    swaps in the receiver list with Northside first, without a page load) and sends; its own
    page of the referral never shows the person's details or the note. Northside sees it in the
    inbox and on the detail page with the markup of the name and note shown as literal text --
    the payload is never parsed or run on any page -- and the phone in E.164; it accepts, logs
    a "Reached" attempt with a note and completes with "Engaged in services". Back at the
    hospital the page shows "Completed" and "Engaged in services", and none of the name, phone,
    note or contact note."""
    # -- the hospital sends ---------------------------------------------------------------------
    hospital = signed_in_page(new_context, HOSPITAL)
    open_new_referral(hospital)
    receivers = hospital.locator("#receivers li")
    expect(receivers.first).not_to_contain_text(NORTH)  # otherwise the swap below proves nothing
    expect(hospital.locator("#receivers")).not_to_contain_text("serves")
    hospital.evaluate("() => { window.__noFullLoad = true; }")
    hospital.locator("#receivers").evaluate("el => el.setAttribute('data-before-swap', '1')")

    fill_referral(hospital)

    assert hospital.evaluate("() => window.__noFullLoad === true"), "choosing a zone reloaded the page"
    assert path_of(hospital) == "/referrals/new"
    expect(hospital.locator("#receivers fieldset")).to_have_count(1)  # swapped inside, not nested
    expect(receivers.first).to_contain_text(NORTH)
    expect(receivers.first).to_contain_text("serves N1")
    expect(hospital.locator("#receivers").get_by_text("serves N1")).to_have_count(1)  # Eastside does not
    expect(hospital.locator("#receivers").get_by_role("radio", name=re.compile(rf"^{NORTH}\b"))).to_be_checked()

    send(hospital)
    hospital.wait_for_url(lambda url: REFERRAL_URL.match(path_of_url(url)) is not None)
    referral_id = referral_id_of(hospital)
    expect(hospital.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Referral\s+Sent\s+Urgent$"))
    expect(dd_after(hospital, "To")).to_have_text(NORTH)
    expect(dd_after(hospital, "Zone")).to_have_text("N1")
    expect(hospital.get_by_role("heading", name="Contact")).to_have_count(0)
    assert_no_personal_details(hospital)
    assert_payload_inert(hospital)
    with app.app_context():
        stored = get_session().get(Referral, referral_id)
        assert stored is not None and stored.status == "sent" and stored.receiver.name == NORTH
        assert stored.consent.method == "verbal" and [o.name for o in stored.consent.recipients] == [NORTH]

    # -- Northside works it ---------------------------------------------------------------------
    cvi = signed_in_page(new_context, CVI)
    cvi.get_by_role("navigation", name="Main").get_by_role("link", name="Inbox").click()
    cvi.wait_for_url(lambda url: path_of_url(url) == "/referrals/inbox")
    expect(cvi.get_by_role("status")).to_have_text("1 new referral waiting to be accepted")
    row = cvi.locator("#inbox li.referral")
    expect(row).to_have_count(1)
    expect(row.locator("strong")).to_have_text(NAME)  # the angle brackets are text
    assert row.locator("strong").evaluate("el => el.children.length") == 0
    expect(row).to_contain_text("Zone N1")
    assert_payload_inert(cvi)

    row.get_by_role("link").click()
    cvi.wait_for_url(lambda url: path_of_url(url) == f"/referrals/{referral_id}")
    heading = cvi.get_by_role("heading", level=1)
    expect(heading).to_contain_text(NAME)
    expect(heading).to_contain_text("Sent")
    expect(cvi.locator(f'a[href="tel:{PHONE_E164}"]')).to_have_text(PHONE_E164)
    expect(dd_after(cvi, "Best time")).to_have_text(BEST_TIME)
    expect(dd_after(cvi, "Language")).to_have_text(LANGUAGE)
    expect(dd_after(cvi, "Texting")).to_have_text("safe")
    expect(dd_after(cvi, "Voicemail")).to_have_text("not safe")
    expect(cvi.locator("p.note")).to_have_text(NOTE)
    assert cvi.locator("p.note").evaluate("el => el.children.length") == 0
    assert_payload_inert(cvi)

    cvi.get_by_role("button", name="Accept").click()
    expect(heading).to_contain_text("Accepted")
    assert path_of(cvi) == f"/referrals/{referral_id}"
    expect(dd_after(cvi, "Assigned to")).to_have_text(demo[CVI])
    assert_payload_inert(cvi)

    cvi.get_by_label("What happened").select_option(label="Reached")
    cvi.get_by_label("Note (stays with your team)").fill(CONTACT_NOTE)
    cvi.get_by_role("button", name="Log attempt").click()
    expect(heading).to_contain_text("In progress")
    log = cvi.get_by_role("region", name="Contact log")
    expect(log).to_contain_text("Reached")
    expect(log).to_contain_text(CONTACT_NOTE)
    assert_payload_inert(cvi)

    cvi.get_by_label("Close with outcome").select_option(label="Engaged in services")
    cvi.get_by_role("button", name="Complete").click()
    expect(heading).to_contain_text("Completed")
    expect(dd_after(cvi, "Outcome")).to_have_text("Engaged in services")
    expect(cvi.get_by_role("alert")).to_have_count(0)
    assert_payload_inert(cvi)
    with app.app_context():
        db = get_session()
        stored = db.get(Referral, referral_id)
        assert (stored.status, stored.outcome) == ("completed", "engaged")
        assert stored.first_contact_at is not None and stored.closed_at is not None
        attempts = db.scalars(select(ContactAttempt).where(ContactAttempt.referral_id == referral_id)).all()
        assert [a.outcome for a in attempts] == ["reached"]

    # -- the loop closes at the hospital: status and outcome, nothing personal -------------------
    hospital.goto(f"/referrals/{referral_id}")
    heading = hospital.get_by_role("heading", level=1)
    expect(heading).to_contain_text("Completed")
    expect(heading).not_to_contain_text("Jay")
    expect(dd_after(hospital, "Outcome")).to_have_text("Engaged in services")
    expect(hospital.get_by_role("heading", name="Contact log")).to_have_count(0)
    expect(hospital.get_by_role("heading", name=re.compile("^Note from"))).to_have_count(0)
    assert_no_personal_details(hospital, [CONTACT_NOTE])
    assert_payload_inert(hospital)

    hospital.get_by_role("navigation", name="Main").get_by_role("link", name="Sent").click()
    hospital.wait_for_url(lambda url: path_of_url(url) == "/referrals/sent")
    sent_row = hospital.locator("tbody tr")
    expect(sent_row).to_have_count(1)
    expect(sent_row).to_contain_text("Completed")
    expect(sent_row).to_contain_text("Engaged in services")
    assert_no_personal_details(hospital, [CONTACT_NOTE])


# -- 2. the person says no -------------------------------------------------------------------
def test_declined_consent_sends_nothing(page: Page, app, demo):
    """When the person declines, "Send referral" records and shares nothing: the page says
    "Nothing was sent" and that declining is never a condition of care, and no referral or
    consent row exists -- even though a name and phone had been typed."""
    sign_in(page, HOSPITAL)
    open_new_referral(page)
    page.get_by_role("textbox", name="Preferred name", exact=True).fill("Declining Person")
    page.get_by_role("textbox", name="Phone", exact=True).fill(PHONE_TYPED)
    page.get_by_label("No, they declined").check()

    send(page, expected_status=200)

    expect(page.get_by_role("heading", level=1)).to_have_text("Nothing was sent")
    expect(page.locator("main")).to_contain_text("never a condition of care")
    expect(page.locator("main")).not_to_contain_text("Declining Person")
    assert count(app, Referral) == 0
    assert count(app, Consent) == 0


# -- 3. a mistake keeps the typing -----------------------------------------------------------
def test_invalid_phone_shows_error_at_the_field_and_keeps_the_form(page: Page, app, demo):
    """A phone that is not a number ("call me") is refused with 422: the error is shown next to
    the Phone field and tied to it (aria-invalid, aria-describedby), the summary says nothing was
    sent, and everything typed is still there -- name, note, zone, receiver, consent -- so that
    correcting the phone alone sends the referral."""
    sign_in(page, HOSPITAL)
    open_new_referral(page)
    fill_referral(page, name="Jordan Keeps", phone="call me", note="Typed once, kept")

    send(page, expected_status=422)

    assert path_of(page) == "/referrals/new"
    expect(page.get_by_role("alert")).to_have_text("Nothing was sent: 1 field needs attention.")
    phone = page.get_by_role("textbox", name="Phone", exact=True)
    expect(phone).to_have_attribute("aria-invalid", "true")
    expect(phone).to_have_attribute("aria-describedby", re.compile(r"(^| )person-phone-error( |$)"))
    expect(phone).to_have_accessible_description(re.compile(re.escape(PHONE_ERROR)))  # after the hint
    expect(phone).to_have_value("call me")
    field = page.locator("div.field").filter(has=page.locator("#person-phone"))
    expect(field.locator("p.error")).to_have_text(PHONE_ERROR)
    expect(page.locator("form p.error")).to_have_count(1)  # the one error, at the one field

    name = page.get_by_role("textbox", name="Preferred name", exact=True)
    expect(name).to_have_value("Jordan Keeps")
    expect(name).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Short note for the receiving team (optional)")).to_have_value("Typed once, kept")
    expect(page.get_by_role("textbox", name="Best time to reach", exact=True)).to_have_value(BEST_TIME)
    expect(page.get_by_label("Zone", exact=True)).to_have_value("N1")
    expect(page.get_by_label("Yes, they agreed")).to_be_checked()
    expect(page.get_by_label("Safe to text")).to_be_checked()
    expect(page.get_by_label("Intensive mentoring")).to_be_checked()
    expect(page.locator("#receivers").get_by_role("radio", name=re.compile(rf"^{NORTH}\b"))).to_be_checked()
    expect(page.get_by_role("group", name=CONSENT_RECIPIENTS).get_by_label(NORTH, exact=True)).to_be_checked()
    assert count(app, Referral) == 0

    phone.fill(PHONE_TYPED)
    send(page)
    page.wait_for_url(lambda url: REFERRAL_URL.match(path_of_url(url)) is not None)
    assert count(app, Referral) == 1


# -- 4. the inbox refreshes itself -----------------------------------------------------------
def test_inbox_shows_a_new_referral_without_reload(page: Page, app, demo):
    """The inbox polls: a referral sent to Northside while its worker has the inbox open shows up
    (count and row) within one polling interval, through an htmx request, without a page load."""
    sign_in(page, CVI)
    page.goto("/referrals/inbox")
    expect(page.get_by_role("status")).to_have_text("0 new referrals waiting to be accepted")
    expect(page.locator("#inbox")).to_contain_text("Nothing here.")
    page.wait_for_function("() => window.htmx !== undefined")
    page.evaluate("() => { window.__noFullLoad = true; }")
    url = page.url

    with page.expect_response(lambda r: path_of_url(r.url) == "/referrals/inbox"
                              and r.request.headers.get("hx-request") == "true"
                              and r.request.resource_type in ("xhr", "fetch"), timeout=25000) as info:
        send_through_service(app, name="Rae Polled")
    assert info.value.status == 200
    expect(page.get_by_role("status")).to_have_text("1 new referral waiting to be accepted", timeout=25000)
    expect(page.locator("#inbox li.referral strong")).to_have_text("Rae Polled")
    assert page.evaluate("() => window.__noFullLoad === true"), "the inbox was reloaded, not swapped"
    assert page.url == url
    expect(page.get_by_role("heading", level=1)).to_have_count(1)  # the partial, not a page inside the page


# -- 5. axe-core -----------------------------------------------------------------------------
def test_new_referral_form_has_no_serious_violations(page: Page, axe, demo):
    """The new-referral form (after choosing a zone, so the swapped-in receiver list is checked
    too) passes axe-core with no serious or critical violation."""
    sign_in(page, HOSPITAL)
    open_new_referral(page)
    choose_zone(page, "N1")
    expect(page.locator("#receivers")).to_contain_text("serves N1")
    violations = blocking_violations(axe, page)
    assert not violations, "axe on /referrals/new:\n" + describe(violations)


def test_new_referral_form_with_errors_has_no_serious_violations(page: Page, axe, demo):
    """The form re-rendered with an error at every required field passes axe-core too."""
    sign_in(page, HOSPITAL)
    open_new_referral(page)
    page.get_by_label("Yes, they agreed").check()
    send(page, expected_status=422)
    expect(page.get_by_role("alert")).to_contain_text("Nothing was sent")
    assert page.locator("form p.error").count() >= 5
    violations = blocking_violations(axe, page)
    assert not violations, "axe on /referrals/new with errors:\n" + describe(violations)


def test_inbox_has_no_serious_violations(page: Page, axe, app, demo):
    """The CVI inbox, holding a referral, passes axe-core with no serious or critical violation."""
    send_through_service(app)
    sign_in(page, CVI)
    page.goto("/referrals/inbox")
    expect(page.locator("#inbox li.referral")).to_have_count(1)
    violations = blocking_violations(axe, page)
    assert not violations, "axe on /referrals/inbox:\n" + describe(violations)


def test_referral_detail_for_the_receiver_has_no_serious_violations(page: Page, axe, app, demo):
    """The referral page as the receiving CVI team sees it -- waiting (accept/decline) and
    accepted (contact log, assign, complete, handoff) -- passes axe-core in both states."""
    referral_id = send_through_service(app)
    sign_in(page, CVI)
    page.goto(f"/referrals/{referral_id}")
    expect(page.get_by_role("button", name="Accept")).to_be_visible()
    violations = blocking_violations(axe, page)
    assert not violations, "axe on a waiting referral:\n" + describe(violations)

    page.get_by_role("button", name="Accept").click()
    expect(page.get_by_role("button", name="Log attempt")).to_be_visible()
    page.locator("details summary").first.click()  # the handoff consent fields, opened
    violations = blocking_violations(axe, page)
    assert not violations, "axe on an accepted referral:\n" + describe(violations)


# -- 6. police ---------------------------------------------------------------------------------
def test_police_have_no_way_to_a_real_referral(page: Page, app, demo):
    """The police partner's navigation has no link to referrals, and the URL of a referral that
    exists answers the same 404 page as one that does not: its existence does not leak."""
    referral_id = send_through_service(app, name="Never For Police")
    sign_in(page, POLICE)
    nav = page.get_by_role("navigation", name="Main")
    nav_links = nav.get_by_role("link")
    assert nav_links.count() >= 2, "no navigation to check"  # Home and Account at least
    hrefs = nav_links.evaluate_all("els => els.map(a => a.href + ' ' + a.textContent)")
    assert not [h for h in hrefs if "referral" in h.lower() or "inbox" in h.lower() or "sent" in h.lower()], hrefs

    pages = {}
    for path in (f"/referrals/{referral_id}", f"/referrals/{uuid.uuid4()}"):
        response = page.goto(path)
        assert response is not None and response.status == 404, (path, response and response.status)
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        expect(page.locator("main")).to_contain_text("There is nothing here, or nothing you may see.")
        expect(page.get_by_role("button", name="Sign out")).to_have_count(1)
        pages[path] = page.locator("main").inner_text()
        assert "Never For Police" not in page.content()
    real, unknown = pages.values()
    assert real == unknown  # the existing referral's 404 is word for word the unknown one's
