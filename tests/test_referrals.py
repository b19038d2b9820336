"""The referral workflow through the web: consent, closed loop, boundary, encryption at rest."""
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from portal.db import get_session
from portal.models import ContactAttempt, DataKey, Referral, ReferralEvent
from tests.conftest import csrf_token, login
from tests.referral_world import build_world

NAME, PHONE, NOTE = "Tavon Example-Person", "(555) 867-5309", "Prefers afternoons; mother answers"
PHONE_E164 = "+15558675309"


@pytest.fixture
def world(app):
    return build_world(app)


def sign_in(app, user):
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    return client


def form(world, **overrides):
    data = {
        "referral_id": str(uuid.uuid4()), "consent.given": "yes",
        "person.preferred_name": NAME, "person.phone": PHONE, "person.best_time": "after 3pm",
        "person.language": "English", "person.safe_to_text": "yes",
        "age_band": "18_24", "zone": "N1", "reason": "gunshot_wound",
        "services": ["intensive_mentoring", "behavioral_health"], "urgency": "urgent", "note": NOTE,
        "receiver_org_id": str(world.north.id), "consent.method": "verbal",
        "consent.recipient_org_ids": [str(world.north.id)], "consent.data_categories": ["contact", "note"],
        "consent.expires_on": "",
    }
    data.update(overrides)
    return data


def send(client, data):
    data = {**data, "csrf_token": csrf_token(client, "/referrals/new")}
    return client.post("/referrals/new", data=data)


def count(app, model=Referral):
    with app.app_context():
        return get_session().scalar(select(func.count()).select_from(model))


def act(client, referral_id, verb, **fields):
    token = csrf_token(client, "/")
    return client.post(f"/referrals/{referral_id}/{verb}", data={"csrf_token": token, **fields})


@pytest.fixture
def sent(app, world):
    """A referral from the hospital to the North team; returns its id."""
    nurse = sign_in(app, world.nurse)
    response = send(nurse, form(world))
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.location.rsplit("/", 1)[1]


def test_full_closed_loop(app, world, sent):
    """Hospital sends → CVI accepts, reaches the person, completes → hospital sees the outcome, never the notes."""
    cvi = sign_in(app, world.north_staff)
    inbox = cvi.get("/referrals/inbox").get_data(as_text=True)
    assert NAME in inbox and "1 new referral waiting" in inbox
    page = cvi.get(f"/referrals/{sent}").get_data(as_text=True)
    assert PHONE_E164 in page and "Prefers afternoons" in page
    assert act(cvi, sent, "accept").status_code == 303
    assert act(cvi, sent, "contact-attempts", outcome="reached", note="Met at the clinic door").status_code == 303
    assert act(cvi, sent, "complete", outcome="engaged").status_code == 303

    with app.app_context():
        referral = get_session().get(Referral, uuid.UUID(sent))
        assert (referral.status, referral.outcome, referral.assigned_to_id) == ("completed", "engaged",
                                                                             world.north_staff.id)
        assert referral.first_contact_at is not None and referral.closed_at is not None
        steps = [e.to_status for e in get_session().scalars(
            select(ReferralEvent).where(ReferralEvent.referral_id == referral.id).order_by(ReferralEvent.at))]
        assert steps == ["sent", "accepted", "in_progress", "completed"]

    nurse = sign_in(app, world.nurse)
    page = nurse.get(f"/referrals/{sent}").get_data(as_text=True)
    assert "Completed" in page and "Engaged in services" in page
    for secret in (NAME, PHONE_E164, "Prefers afternoons", "Met at the clinic door", "Contact log"):
        assert secret not in page
    assert "Completed" in nurse.get("/referrals/sent").get_data(as_text=True)


def test_declined_consent_sends_nothing(app, world):
    """If the person declines, nothing is written and the page says so plainly."""
    nurse = sign_in(app, world.nurse)
    response = send(nurse, form(world, **{"consent.given": "no"}))
    assert response.status_code == 200 and "Nothing was sent" in response.get_data(as_text=True)
    assert "never a condition of care" in response.get_data(as_text=True)
    assert count(app) == 0


@pytest.mark.parametrize("overrides, field, message", [
    ({"consent.given": ""}, "consent.given", "Record whether the person agreed"),
    ({"consent.method": ""}, "consent.method", "Choose one."),
    ({"consent.recipient_org_ids": []}, "consent.recipient_org_ids", "Name at least one"),
    ({"consent.expires_on": "2020-01-01"}, "consent.expires_on", "already expired"),
    ({"consent.expires_on": "2099-01-01"}, "consent.expires_on", "at most 365 days"),
    ({"zone": "ZZ9"}, "zone", "Not a known zone"),
    ({"services": ["mind_reading"]}, "services", "Not one of the allowed choices"),
    ({"reason": "robbery"}, "reason", "Not one of the allowed choices"),
    ({"person.phone": "call me maybe"}, "person.phone", "Enter a phone number"),
    ({"person.preferred_name": "Tav\x07on"}, "person.preferred_name", "control characters"),  # NUL: test_input_guard
    ({"note": "x" * 281}, "note", "at most 280"),
    ({"person.preferred_name": "  "}, "person.preferred_name", "required"),
])
def test_bad_input_gets_a_clear_error_and_writes_nothing(app, world, overrides, field, message):
    nurse = sign_in(app, world.nurse)
    response = send(nurse, form(world, **overrides))
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="{field.replace(".", "-")}-error">' in body and message in body
    assert NAME in body or field == "person.preferred_name"  # what was typed is kept
    assert count(app) == 0 and count(app, DataKey) == 0


def test_receiver_outside_consent_scope_is_refused(app, world):
    nurse = sign_in(app, world.nurse)
    response = send(nurse, form(world, **{"consent.recipient_org_ids": [str(world.east.id)]}))
    assert response.status_code == 422 and "does not name this receiver" in response.get_data(as_text=True)
    assert count(app) == 0


@pytest.mark.parametrize("receiver", ["police", "city"])
def test_referral_to_police_or_city_office_is_refused(app, world, receiver):
    org = getattr(world, receiver)
    nurse = sign_in(app, world.nurse)
    response = send(nurse, form(world, receiver_org_id=str(org.id), **{"consent.recipient_org_ids": [str(org.id)]}))
    assert response.status_code == 422
    assert count(app) == 0


def test_double_submit_makes_one_referral(app, world):
    nurse = sign_in(app, world.nurse)
    data = form(world)
    first, second = send(nurse, data), send(nurse, data)
    assert first.status_code == second.status_code == 303 and first.location == second.location
    assert count(app) == 1


def test_script_in_note_is_stored_as_text_and_rendered_escaped(app, world):
    nurse = sign_in(app, world.nurse)
    payload = '<script>alert("x")</script>'
    response = send(nurse, form(world, note=payload, **{"person.preferred_name": "<b>Bold</b>"}))
    referral_id = response.location.rsplit("/", 1)[1]
    cvi = sign_in(app, world.north_admin)
    page = cvi.get(f"/referrals/{referral_id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page and payload not in page
    assert "&lt;b&gt;Bold&lt;/b&gt;" in cvi.get("/referrals/inbox").get_data(as_text=True)


def test_stale_transition_answers_409(app, world, sent):
    cvi = sign_in(app, world.north_staff)
    assert act(cvi, sent, "accept").status_code == 303
    again = act(cvi, sent, "accept")
    assert again.status_code == 409 and "cannot be accepted now" in again.get_data(as_text=True)
    assert act(cvi, sent, "decline", reason="at_capacity").status_code == 409


def test_decline_and_cancel_need_a_reason(app, world, sent):
    cvi = sign_in(app, world.north_staff)
    assert act(cvi, sent, "decline").status_code == 422
    assert act(cvi, sent, "decline", reason="free text is not a code").status_code == 422
    assert act(cvi, sent, "decline", reason="outside_service_area").status_code == 303
    with app.app_context():
        referral = get_session().get(Referral, uuid.UUID(sent))
        assert (referral.status, referral.status_reason) == ("declined", "outside_service_area")


def test_only_the_receiver_moves_a_referral_forward(app, world, sent):
    """The sender may cancel, never accept or complete; the answer is 404 (no action for them)."""
    nurse = sign_in(app, world.nurse)
    assert act(nurse, sent, "accept").status_code == 404
    assert act(nurse, sent, "complete", outcome="engaged").status_code == 404
    assert act(nurse, sent, "cancel", reason="sent_in_error").status_code == 303
    with app.app_context():
        assert get_session().get(Referral, uuid.UUID(sent)).status == "cancelled"


ACTIONS = [("accept", {}), ("decline", {"reason": "at_capacity"}), ("assign", {"user_id": ""}),
           ("contact-attempts", {"outcome": "reached"}), ("hold", {"reason": "other"}), ("resume", {}),
           ("complete", {"outcome": "engaged"}), ("handoff", {"receiver_org_id": ""}),
           ("cancel", {"reason": "other"}), ("consent/revoke", {})]


@pytest.mark.parametrize("who", ["police_staff", "city_staff", "portal_admin", "east_admin", "provider_staff"])
def test_outsiders_get_404_for_the_referral_and_every_action(app, world, sent, who):
    """Police, the city office, a portal admin, another CVI team and an unrelated provider: 404 everywhere."""
    client = sign_in(app, getattr(world, who))
    response = client.get(f"/referrals/{sent}")
    assert response.status_code == 404 and NAME not in response.get_data(as_text=True)
    for verb, fields in ACTIONS:
        assert act(client, sent, verb, **fields).status_code == 404, verb
    with app.app_context():
        referral = get_session().get(Referral, uuid.UUID(sent))
        assert referral.status == "sent" and referral.consent.revoked_at is None


@pytest.mark.parametrize("who", ["police_staff", "city_staff"])
def test_police_and_city_cannot_open_send_or_list(app, world, who):
    client = sign_in(app, getattr(world, who))
    for path in ("/referrals/new", "/referrals/inbox", "/referrals/sent", "/referrals/new/receivers"):
        assert client.get(path).status_code == 403, path
    token = csrf_token(client, "/")
    assert client.post("/referrals/new", data={**form(world), "csrf_token": token}).status_code == 403
    assert count(app) == 0
    home = client.get("/").get_data(as_text=True)
    assert "/referrals" not in home


def test_visitor_and_forged_request(app, world, sent):
    visitor = app.test_client()
    response = visitor.get(f"/referrals/{sent}")
    assert response.status_code == 302 and response.location.startswith("/login")
    cvi = sign_in(app, world.north_staff)
    assert cvi.post(f"/referrals/{sent}/accept").status_code == 400  # no CSRF token
    with app.app_context():
        assert get_session().get(Referral, uuid.UUID(sent)).status == "sent"


def test_staff_see_their_own_and_unassigned_supervisors_see_all(app, world, sent):
    admin = sign_in(app, world.north_admin)
    assert act(admin, sent, "accept").status_code == 303
    assert act(admin, sent, "assign", user_id=str(world.north_staff2.id)).status_code == 303
    other_staff = sign_in(app, world.north_staff)
    assert other_staff.get(f"/referrals/{sent}").status_code == 404
    assert NAME not in other_staff.get("/referrals/inbox").get_data(as_text=True)
    assignee = sign_in(app, world.north_staff2)
    assert NAME in assignee.get(f"/referrals/{sent}").get_data(as_text=True)
    assert NAME in admin.get("/referrals/inbox").get_data(as_text=True)


def test_assign_only_to_a_worker_of_the_team(app, world, sent):
    admin = sign_in(app, world.north_admin)
    act(admin, sent, "accept")
    assert act(admin, sent, "assign", user_id=str(world.east_admin.id)).status_code == 422
    staff = sign_in(app, world.north_staff)
    assert act(staff, sent, "assign", user_id=str(world.north_staff.id)).status_code == 404  # staff cannot assign


def test_handoff_within_consent_scope_releases_only_consented_categories(app, world):
    nurse = sign_in(app, world.nurse)
    response = send(nurse, form(world, **{"consent.recipient_org_ids": [str(world.north.id), str(world.provider.id)],
                                          "consent.data_categories": ["contact"]}))
    referral_id = response.location.rsplit("/", 1)[1]
    cvi = sign_in(app, world.north_admin)
    act(cvi, referral_id, "accept")
    assert act(cvi, referral_id, "handoff", receiver_org_id=str(world.provider.id)).status_code == 303
    with app.app_context():
        child = get_session().scalar(select(Referral).where(Referral.parent_id == uuid.UUID(referral_id)))
        assert child.receiver_org_id == world.provider.id and child.note_enc is None
    provider = sign_in(app, world.provider_staff)
    page = provider.get(f"/referrals/{child.id}").get_data(as_text=True)
    assert NAME in page and PHONE_E164 in page and "Prefers afternoons" not in page
    assert provider.get(f"/referrals/{referral_id}").status_code == 404  # the original stays with CVI
    assert "handed off" in nurse.get(f"/referrals/{referral_id}").get_data(as_text=True)
    assert nurse.get(f"/referrals/{child.id}").status_code == 404


def test_handoff_outside_scope_needs_a_new_consent(app, world, sent):
    cvi = sign_in(app, world.north_admin)
    act(cvi, sent, "accept")
    refused = act(cvi, sent, "handoff", receiver_org_id=str(world.provider.id))
    assert refused.status_code == 422 and "record a new consent" in refused.get_data(as_text=True)
    assert count(app) == 1
    allowed = act(cvi, sent, "handoff", receiver_org_id=str(world.provider.id), **{
        "consent.method": "verbal", "consent.data_categories": ["contact", "note"]})
    assert allowed.status_code == 303 and count(app) == 2
    provider = sign_in(app, world.provider_staff)
    assert provider.get("/referrals/inbox").get_data(as_text=True).count(NAME) == 1


def test_revocation_shreds_details_for_everyone_and_keeps_counts(app, world, sent):
    cvi = sign_in(app, world.north_admin)
    act(cvi, sent, "accept")
    act(cvi, sent, "contact-attempts", outcome="left_message", note="Voicemail at 5pm")
    nurse = sign_in(app, world.nurse)
    assert act(nurse, sent, "consent/revoke").status_code == 303
    with app.app_context():
        db = get_session()
        referral = db.get(Referral, uuid.UUID(sent))
        assert referral.status == "revoked" and referral.personal_enc is None and referral.note_enc is None
        assert db.get(DataKey, referral.id) is None
        assert all(a.note_enc is None for a in db.scalars(select(ContactAttempt)))
        assert referral.zone.code == "N1" and referral.services  # codes stay for the counts
    for user in (world.north_admin, world.north_staff, world.nurse):
        page = sign_in(app, user).get(f"/referrals/{sent}").get_data(as_text=True)
        for secret in (NAME, PHONE_E164, "Prefers afternoons", "Voicemail at 5pm"):
            assert secret not in page
    assert "Consent ended" in page


def test_personal_fields_never_reach_the_database_in_plain_text(app, world, sent, database_url, tmp_path):
    """Search the raw SQLite file (and a PostgreSQL dump) for the name, phone and notes."""
    cvi = sign_in(app, world.north_admin)
    act(cvi, sent, "accept")
    act(cvi, sent, "contact-attempts", outcome="reached", note="Contact note Zanzibar")
    app.extensions["portal.db"].dispose()
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    else:
        import subprocess
        from sqlalchemy.engine import make_url
        url = make_url(database_url)
        raw = subprocess.run(["pg_dump", "-h", url.host, "-p", str(url.port or 5432), "-U", url.username or "postgres",
                              "--data-only", url.database], capture_output=True, check=True, timeout=60).stdout
    assert b"referrals" in raw or database_url.startswith("sqlite")
    for secret in (NAME, "Tavon", PHONE_E164, "8675309", "Prefers afternoons", "Zanzibar"):
        assert secret.encode() not in raw, secret
        assert secret.encode("utf-16-le") not in raw, secret


def test_team_marks_itself_at_capacity_and_senders_see_it(app, world):
    """A team lead sets intake; the sender's form shows it; staff and other teams cannot change it."""
    lead = sign_in(app, world.north_admin)
    token = csrf_token(lead, "/referrals/inbox")
    assert lead.post(f"/admin/organizations/{world.north.id}/intake",
                     data={"intake": "at_capacity", "csrf_token": token}).status_code == 303
    nurse = sign_in(app, world.nurse)
    options = nurse.get("/referrals/new/receivers", query_string={"zone": "N1"}).get_data(as_text=True)
    north = options.split("North Team")[1].split("</li>")[0]
    assert "at capacity" in north and options.index("North Team") < options.index("East Team")
    for outsider in (world.north_staff, world.east_admin, world.police_staff):
        client = sign_in(app, outsider)
        token = csrf_token(client, "/")
        response = client.post(f"/admin/organizations/{world.north.id}/intake",
                               data={"intake": "open", "csrf_token": token})
        assert response.status_code == 404
    visitor = app.test_client()
    assert visitor.post(f"/admin/organizations/{world.north.id}/intake", data={"intake": "open"}).status_code == 400
    assert lead.post(f"/admin/organizations/{world.north.id}/intake", data={"intake": "open"}).status_code == 400
    with app.app_context():
        from portal.models import Organization
        assert get_session().get(Organization, world.north.id).intake == "at_capacity"


def test_free_text_in_a_reason_never_reaches_the_sender(app, world, sent):
    """A reason on a verb that takes none is dropped; a reason must be a code: free text stays put."""
    cvi = sign_in(app, world.north_staff)
    leak = "Call his cousin Marcus at 555-0100"
    assert act(cvi, sent, "accept", reason=leak, outcome=leak).status_code == 303
    assert act(cvi, sent, "cancel", reason=leak).status_code == 422
    with app.app_context():
        referral = get_session().get(Referral, uuid.UUID(sent))
        assert referral.status_reason is None and referral.outcome is None
        assert all(e.reason_code is None for e in referral.events)
    assert "Marcus" not in sign_in(app, world.nurse).get(f"/referrals/{sent}").get_data(as_text=True)
