"""JSON API v1 from the outside: the closed loop, validation, the boundary, consent, OpenAPI.

Every test signs real users in through /login and speaks JSON with the X-CSRFToken header a
browser client would send; each runs on SQLite and PostgreSQL (see conftest.py).
"""
from __future__ import annotations

import re
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from portal.admin import service as admin_service
from portal.db import get_session
from portal.models import Organization, Referral, User
from portal.referrals import codes
from tests.conftest import csrf_token, login

API = "/api/v1"
PROBLEM = "application/problem+json"
IN_60_DAYS = (date.today() + timedelta(days=60)).isoformat()

# Every POST on one referral, with a body that would be valid for it.
ACTIONS = {
    "accept": {}, "decline": {"reason": "at_capacity"}, "hold": {"reason": "person_unavailable"}, "resume": {},
    "complete": {"outcome": "engaged"}, "cancel": {"reason": "sent_in_error"}, "assign": {"user_id": None},
    "contact-attempts": {"outcome": "reached", "note": "ok"}, "handoff": {"receiver_org_id": None},
    "consent/revoke": {},
}


class Api:
    """One signed-in browser: its own cookie jar and the CSRF token of its session."""

    def __init__(self, app, user: User):
        self.user = user
        self.client = app.test_client()
        assert login(self.client, user.email).status_code == 302
        self.token = csrf_token(self.client, "/")

    def get(self, path: str, **kwargs):
        return self.client.get(API + path, **kwargs)

    def post(self, path: str, json=None, headers: dict | None = None):
        return self.client.post(API + path, json=json, headers={"X-CSRFToken": self.token, **(headers or {})})


# Users of the world, made on first use (argon2 makes each account cost a few tens of ms).
USERS = {"nurse": ("hospital", "staff"), "a_admin": ("cvi_a", "org_admin"), "a_staff": ("cvi_a", "staff"),
         "b_admin": ("cvi_b", "org_admin"), "b_staff": ("cvi_b", "staff"), "provider_user": ("provider", "staff"),
         "police": ("police_org", "org_admin"), "city": ("city_org", "org_admin")}


class World:
    """The organizations, and their users on demand: `world.nurse`, `world.a_staff`, ..."""

    def __init__(self, app, make, orgs: dict[str, Organization]):
        self.app, self.make = app, make
        self.hospital, self.cvi_a, self.cvi_b = orgs["hospital"], orgs["cvi_a"], orgs["cvi_b"]
        self.provider, self.police_org, self.city_org = orgs["provider"], orgs["police_org"], orgs["city_org"]

    def __getattr__(self, name: str) -> User:
        if name not in USERS:
            raise AttributeError(name)
        org, role = USERS[name]
        user = self.__dict__[name] = self.make.user(getattr(self, org), role)
        return user

    def api(self, user: User) -> Api:
        return Api(self.app, user)

    def body(self, recipients=None, categories=("contact", "note"), **fields) -> dict:
        """A valid referral from the hospital to CVI team A."""
        recipients = [self.cvi_a, self.provider] if recipients is None else recipients
        body = {
            "receiver_org_id": str(self.cvi_a.id),
            "person": {"preferred_name": "Dee", "phone": "(555) 123-4567", "best_time": "evenings",
                       "language": "English", "safe_to_text": True, "safe_voicemail": False, "code_word": "blue"},
            "age_band": "18_24", "zone": "NORTH", "reason": "gunshot_wound",
            "services": ["intensive_mentoring", "care_management"], "urgency": "urgent", "note": "Prefers Dee.",
            "consent": {"method": "verbal", "recipient_org_ids": [str(o.id) for o in recipients],
                        "data_categories": list(categories), "expires_on": IN_60_DAYS},
        }
        body.update(fields)
        return body

    def work(self, body: dict) -> dict:
        """An ACTIONS body made valid for this world (the handoff names the provider)."""
        return {**body, "receiver_org_id": str(self.provider.id)} if "receiver_org_id" in body else body

    def send(self, api: Api | None = None, **kwargs) -> str:
        response = (api or self.api(self.nurse)).post("/referrals", json=self.body(**kwargs))
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    def count(self) -> int:
        with self.app.app_context():
            return get_session().scalar(select(func.count()).select_from(Referral))


@pytest.fixture
def world(app, make) -> World:
    """A hospital, two CVI teams (an org admin and a staff member each), a service provider,
    a police partner and a city office, in two zones."""
    with app.app_context():
        db = get_session()
        north = admin_service.create_zone(db, "NORTH", "North side")
        south = admin_service.create_zone(db, "SOUTH", "South side")
        orgs = {key: admin_service.create_organization(db, name, kind, zones) for key, name, kind, zones in (
            ("hospital", "General Hospital HVIP", "hospital_program", [north.id, south.id]),
            ("cvi_a", "North Peacekeepers", "cvi_team", [north.id]),
            ("cvi_b", "South Interrupters", "cvi_team", [south.id]),
            ("provider", "Housing Works", "service_provider", [north.id, south.id]),
            ("police_org", "Police Liaison", "police_partner", []),
            ("city_org", "Office of Violence Prevention", "city_office", []),
        )}
        db.commit()
    return World(app, make, orgs)


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status and body["type"] and body["title"]
    return body


def ids(response) -> set[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return {item["id"] for item in response.get_json()["items"]}


# -- the closed loop -------------------------------------------------------------------------
def test_full_loop_through_the_api(world):
    """Hospital sends, the CVI team accepts, logs a contact and completes; the hospital then sees
    status and outcome, and never the person, the note or the contact log."""
    nurse, worker = world.api(world.nurse), world.api(world.a_staff)
    directory = nurse.get("/directory").get_json()["items"]
    team = next(o for o in directory if o["id"] == str(world.cvi_a.id))
    assert team == {"id": str(world.cvi_a.id), "name": "North Peacekeepers", "kind": "cvi_team",
                    "zones": ["NORTH"], "intake": "open"}
    assert str(world.hospital.id) not in {o["id"] for o in directory}  # not to itself
    assert not {str(world.police_org.id), str(world.city_org.id)} & {o["id"] for o in directory}

    sent = nurse.post("/referrals", json=world.body())
    assert sent.status_code == 201
    referral = sent.get_json()
    rid = referral["id"]
    assert sent.headers["Location"].endswith(f"{API}/referrals/{rid}")
    assert referral["status"] == "sent" and "person" not in referral and "note" not in referral

    assert rid in ids(worker.get("/referrals?box=inbox"))
    seen = worker.get(f"/referrals/{rid}").get_json()
    assert seen["person"]["phone"] == "+15551234567" and seen["note"] == "Prefers Dee."
    assert nurse.post(f"/referrals/{rid}/accept").status_code == 404  # the sender does not work it

    accepted = worker.post(f"/referrals/{rid}/accept")
    assert accepted.status_code == 200 and accepted.get_json()["status"] == "accepted"
    assert accepted.get_json()["assigned_to"]["id"] == str(world.a_staff.id)
    contact = worker.post(f"/referrals/{rid}/contact-attempts", json={"outcome": "reached", "note": "Met at home."})
    assert contact.status_code == 201
    assert contact.get_json()["status"] == "in_progress"
    assert [(a["outcome"], a["note"]) for a in contact.get_json()["contact_attempts"]] == [("reached", "Met at home.")]
    done = worker.post(f"/referrals/{rid}/complete", json={"outcome": "engaged"})
    assert done.status_code == 200 and done.get_json()["status"] == "completed"
    assert [e["to"] for e in done.get_json()["events"]] == ["sent", "accepted", "in_progress", "completed"]

    closed_loop = nurse.get(f"/referrals/{rid}")
    assert closed_loop.status_code == 200
    view = closed_loop.get_json()
    assert view["status"] == "completed" and view["outcome"] == "engaged" and view["fhir_status"] == "completed"
    assert not {"person", "note", "contact_attempts", "assigned_to", "retaliation_risk"} & view.keys()
    row = nurse.get("/referrals?box=sent").get_json()["items"][0]
    assert row["id"] == rid and row["status"] == "completed" and "preferred_name" not in row


def test_script_in_the_note_is_stored_and_returned_as_text(world):
    """A script tag is data: the receiver gets back the exact string, as a JSON string."""
    note = '<script>alert("x")</script> & <b>bold</b>'
    rid = world.send(note=note)
    response = world.api(world.a_admin).get(f"/referrals/{rid}")
    assert response.mimetype == "application/json"
    assert response.get_json()["note"] == note


# -- validation ------------------------------------------------------------------------------
def test_invalid_referrals_answer_422_per_field_and_write_nothing(world):
    """Each wrong field answers 422 problem+json naming that field's path, and nothing is written."""
    nurse = world.api(world.nurse)
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    cases = {
        "zone": lambda b: b.update(zone="NOWHERE"),
        "services": lambda b: b.update(services=["astrology"]),
        "person.phone": lambda b: b["person"].update(phone="call me maybe"),
        "note": lambda b: b.update(note="x" * (codes.NOTE_MAX + 1)),
        "person.preferred_name": lambda b: b["person"].update(preferred_name="Dee\x07\u202e"),
        "consent.expires_on": lambda b: b["consent"].update(expires_on=yesterday),
        "consent": lambda b: b.pop("consent"),
        "consent.recipient_org_ids": lambda b: b["consent"].update(recipient_org_ids=[str(world.provider.id)]),
    }
    before = world.count()
    for field, spoil in cases.items():
        body = world.body()
        spoil(body)
        problem = assert_problem(nurse.post("/referrals", json=body), 422)
        assert field in problem["errors"], (field, problem)
        assert problem["detail"]
    assert world.count() == before == 0

    several = world.body(age_band="ancient", reason=None)
    several["person"]["phone"] = "12"
    errors = assert_problem(nurse.post("/referrals", json=several), 422)["errors"]
    assert {"age_band", "reason", "person.phone"} <= errors.keys()  # every error at once


def test_malformed_json_or_a_non_object_body_answers_400(world):
    """A body that is not a JSON object is refused before any rule runs."""
    nurse = world.api(world.nurse)
    form = "application/x-www-form-urlencoded"
    for kwargs in ({"data": "{not json", "content_type": "application/json"}, {"json": [world.body()]},
                   {"json": "text"}, {"data": "receiver_org_id=x", "content_type": form}):
        response = nurse.client.post(f"{API}/referrals", headers={"X-CSRFToken": nurse.token}, **kwargs)
        assert_problem(response, 400)
    rid = world.send()
    worker = world.api(world.a_admin)
    response = worker.client.post(f"{API}/referrals/{rid}/accept", data="[]", content_type="application/json",
                                  headers={"X-CSRFToken": worker.token})
    assert_problem(response, 400)
    assert world.count() == 1


def test_work_bodies_are_validated(world):
    """A missing or unknown reason, outcome or worker answers 422 naming the field; status is unchanged."""
    rid = world.send()
    admin = world.api(world.a_admin)
    assert "reason" in assert_problem(admin.post(f"/referrals/{rid}/decline", json={}), 422)["errors"]
    assert "reason" in assert_problem(admin.post(f"/referrals/{rid}/decline", json={"reason": ["x"]}), 422)["errors"]
    assert admin.post(f"/referrals/{rid}/accept").status_code == 200
    assert "outcome" in assert_problem(admin.post(f"/referrals/{rid}/complete", json={"outcome": "x"}), 422)["errors"]
    attempt = admin.post(f"/referrals/{rid}/contact-attempts", json={"outcome": "reached", "note": "y" * 281})
    assert "note" in assert_problem(attempt, 422)["errors"]
    for body in ({"user_id": str(world.b_staff.id)}, {"user_id": "nobody"}, {}):
        assert "user_id" in assert_problem(admin.post(f"/referrals/{rid}/assign", json=body), 422)["errors"]
    view = admin.get(f"/referrals/{rid}").get_json()
    assert view["status"] == "accepted" and view["contact_attempts"] == []


# -- idempotency, session, CSRF --------------------------------------------------------------
def test_idempotency_key_makes_a_double_submit_one_referral(world, make):
    """The same Idempotency-Key sent twice by the same user yields one referral (201, then 200)."""
    nurse = world.api(world.nurse)
    key = str(uuid.uuid4())
    first = nurse.post("/referrals", json=world.body(), headers={"Idempotency-Key": key})
    again = nurse.post("/referrals", json=world.body(), headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["id"] == again.get_json()["id"] == key
    assert again.headers["Location"].endswith(f"/referrals/{key}")
    colleague = world.api(make.user(world.hospital, "staff"))
    assert_problem(colleague.post("/referrals", json=world.body(), headers={"Idempotency-Key": key}), 400)
    assert_problem(nurse.post("/referrals", json=world.body(), headers={"Idempotency-Key": "again-please"}), 400)
    assert world.count() == 1


def test_visitor_without_session_gets_401_problem(world, client):
    """No session: every API URL answers 401 problem+json (never a redirect to the login page)."""
    rid = world.send()
    for path in ("/directory", "/referrals", "/referrals?box=sent", f"/referrals/{rid}", "/openapi.json"):
        response = client.get(API + path)
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Cookie")  # RFC 9110: a 401 names its scheme
    assert_problem(client.get(f"{API}/no-such-thing"), 404)


def test_post_without_or_with_a_forged_csrf_token_answers_400(world):
    """A signed-in POST must carry the session's X-CSRFToken; nothing is written without it."""
    nurse = world.api(world.nurse)
    assert_problem(nurse.client.post(f"{API}/referrals", json=world.body()), 400)
    assert_problem(nurse.client.post(f"{API}/referrals", json=world.body(), headers={"X-CSRFToken": "forged"}), 400)
    other = world.api(world.a_admin)  # a real token, of another session
    assert_problem(nurse.client.post(f"{API}/referrals", json=world.body(), headers={"X-CSRFToken": other.token}), 400)
    assert world.count() == 0


# -- the boundary ----------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["police", "city"])
def test_police_and_city_never_touch_a_referral(world, who):
    """Police and the city office: 403 on sending, no list, and 404 on a real referral for every call."""
    rid = world.send()
    api = world.api(getattr(world, who))
    assert_problem(api.get("/directory"), 403)
    assert_problem(api.post("/referrals", json=world.body()), 403)
    for box in ("inbox", "sent"):
        assert api.get(f"/referrals?box={box}").status_code in (403, 404)
    assert_problem(api.get(f"/referrals/{rid}"), 404)
    for action, body in ACTIONS.items():
        assert_problem(api.post(f"/referrals/{rid}/{action}", json=world.work(body)), 404)
    assert world.count() == 1
    assert world.api(world.a_admin).get(f"/referrals/{rid}").get_json()["status"] == "sent"


def test_other_cvi_team_sees_nothing_of_a_referral_to_team_a(world):
    """A referral to team A answers 404 to team B for reading and every action, and is not in B's inbox."""
    rid = world.send()
    for user in (world.b_admin, world.b_staff):
        api = world.api(user)
        assert_problem(api.get(f"/referrals/{rid}"), 404)
        for action, body in ACTIONS.items():
            assert_problem(api.post(f"/referrals/{rid}/{action}", json=world.work(body)), 404)
        assert rid not in ids(api.get("/referrals?box=inbox"))
        assert rid not in ids(api.get("/referrals?box=sent"))
    view = world.api(world.a_admin).get(f"/referrals/{rid}").get_json()
    assert view["status"] == "sent" and view["consent_active"]


def test_staff_see_unassigned_and_their_own_but_not_a_colleagues(world):
    """Receiving staff see unassigned referrals and those assigned to them; a colleague's is 404."""
    unassigned, colleagues, mine = world.send(), world.send(), world.send()
    admin, staff = world.api(world.a_admin), world.api(world.a_staff)
    assert admin.post(f"/referrals/{colleagues}/accept").status_code == 200  # now the admin's
    assigned = admin.post(f"/referrals/{mine}/assign", json={"user_id": str(world.a_staff.id)})
    assert assigned.status_code == 200 and assigned.get_json()["assigned_to"]["id"] == str(world.a_staff.id)

    assert ids(staff.get("/referrals?box=inbox")) == {unassigned, mine}
    assert ids(admin.get("/referrals?box=inbox")) == {unassigned, colleagues, mine}
    assert staff.get(f"/referrals/{mine}").get_json()["person"]["preferred_name"] == "Dee"
    assert staff.get(f"/referrals/{unassigned}").status_code == 200
    assert_problem(staff.get(f"/referrals/{colleagues}"), 404)
    assert_problem(staff.post(f"/referrals/{colleagues}/complete", json={"outcome": "engaged"}), 404)
    assert_problem(staff.post(f"/referrals/{mine}/assign", json={"user_id": None}), 404)  # supervisors assign


def test_stale_transition_answers_409_problem(world):
    """Accepting a referral that is already accepted answers 409 with the reason; nothing changes."""
    rid = world.send()
    admin = world.api(world.a_admin)
    assert admin.post(f"/referrals/{rid}/accept").status_code == 200
    problem = assert_problem(admin.post(f"/referrals/{rid}/accept"), 409)
    assert "accepted" in problem["detail"].lower()
    assert [e["to"] for e in admin.get(f"/referrals/{rid}").get_json()["events"]] == ["sent", "accepted"]


# -- lists -----------------------------------------------------------------------------------
def test_lists_page_and_refuse_bad_parameters(world):
    """Lists answer items with limit and offset, newest first; bad parameters answer 400."""
    first, second = world.send(), world.send(urgency="routine")
    nurse, admin = world.api(world.nurse), world.api(world.a_admin)
    page = nurse.get("/referrals?box=sent").get_json()
    assert (page["limit"], page["offset"]) == (50, 0)
    assert [r["id"] for r in page["items"]] == [second, first]
    assert [r["id"] for r in nurse.get("/referrals?box=sent&limit=1&offset=1").get_json()["items"]] == [first]
    assert ids(admin.get("/referrals")) == {first, second}  # the inbox by default
    assert admin.get("/referrals?box=inbox").get_json()["items"][0]["preferred_name"] == "Dee"
    assert ids(admin.get("/referrals?box=inbox&status=accepted")) == set()
    for query in ("box=outbox", "status=lost", "limit=0", "limit=201", "limit=ten", "offset=-1",
                  "offset=99999999999999999999", "box=sent&status=sent"):
        assert_problem(admin.get(f"/referrals?{query}"), 400)


# -- handoff and consent ---------------------------------------------------------------------
@pytest.mark.parametrize("categories, shows_person", [(("contact", "note"), True), (("note",), False)])
def test_handoff_within_the_consent(world, categories, shows_person):
    """A handoff to a provider the consent names works; the provider sees the person only if the
    consent releases "contact", and the original sender never sees the new referral."""
    rid = world.send(categories=categories)
    admin = world.api(world.a_admin)
    assert admin.post(f"/referrals/{rid}/accept").status_code == 200
    response = admin.post(f"/referrals/{rid}/handoff", json={"receiver_org_id": str(world.provider.id)})
    assert response.status_code == 201, response.get_json()
    child = response.get_json()
    assert response.headers["Location"].endswith(f"/referrals/{child['id']}")
    assert child["receiver"]["id"] == str(world.provider.id) and child["status"] == "sent"
    assert "person" not in child  # the team that handed off follows the status only

    provider = world.api(world.provider_user).get(f"/referrals/{child['id']}").get_json()
    assert ("person" in provider) is shows_person
    if shows_person:
        assert provider["person"]["preferred_name"] == "Dee"
    assert provider["note"] == "Prefers Dee."
    nurse = world.api(world.nurse)
    assert nurse.get(f"/referrals/{rid}").get_json()["handed_off"] is True
    assert_problem(nurse.get(f"/referrals/{child['id']}"), 404)


def test_handoff_to_an_organization_the_consent_does_not_name_needs_a_new_consent(world):
    """Without a new consent, a handoff outside the consent answers 422 and writes nothing; with one
    recorded now, it goes through."""
    rid = world.send(recipients=[world.cvi_a])
    admin = world.api(world.a_admin)
    assert admin.post(f"/referrals/{rid}/accept").status_code == 200
    before = world.count()
    refused = admin.post(f"/referrals/{rid}/handoff", json={"receiver_org_id": str(world.provider.id)})
    assert "receiver_org_id" in assert_problem(refused, 422)["errors"]
    assert world.count() == before
    bad_consent = admin.post(f"/referrals/{rid}/handoff", json={"receiver_org_id": str(world.provider.id),
                                                                "consent": {"method": "telepathy"}})
    assert "consent.method" in assert_problem(bad_consent, 422)["errors"]
    consented = admin.post(f"/referrals/{rid}/handoff", json={
        "receiver_org_id": str(world.provider.id),
        "consent": {"method": "written", "data_categories": ["contact"], "expires_on": IN_60_DAYS}})
    assert consented.status_code == 201, consented.get_json()
    provider = world.api(world.provider_user).get(f"/referrals/{consented.get_json()['id']}").get_json()
    assert provider["person"]["preferred_name"] == "Dee" and "note" not in provider
    assert world.count() == before + 1


def test_revocation_hides_the_person_from_every_role(world):
    """After the hospital records a revocation, the team's GET shows status "revoked" and no person
    or note, for the org admin and for staff; revoking again answers 409."""
    rid = world.send()
    nurse = world.api(world.nurse)
    revoked = nurse.post(f"/referrals/{rid}/consent/revoke")
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"
    for user in (world.a_admin, world.a_staff):
        api = world.api(user)
        view = api.get(f"/referrals/{rid}").get_json()
        assert view["status"] == "revoked" and view["consent_active"] is False
        assert "person" not in view and "note" not in view
        assert [r for r in api.get("/referrals?box=inbox&status=revoked").get_json()["items"]
                if r["id"] == rid and "preferred_name" not in r]
    assert_problem(nurse.post(f"/referrals/{rid}/consent/revoke"), 409)


# -- the description -------------------------------------------------------------------------
def test_openapi_document_lists_exactly_the_api_routes(app, world):
    """Every rule under /api/v1 is in the OpenAPI document with its method, and nothing else is."""
    document = world.api(world.nurse).get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    described = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    routed = {(re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule.removeprefix(API)), method)
              for rule in app.url_map.iter_rules() if rule.rule.startswith(API + "/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert described == routed
    schemas = document["components"]["schemas"]
    assert schemas["NewReferral"]["properties"]["services"]["items"]["enum"] == list(codes.SERVICES)
    assert schemas["NewConsent"]["properties"]["data_categories"]["items"]["enum"] == list(codes.DATA_CATEGORIES)
    assert all(op.get("x-portal-action") for item in document["paths"].values() for op in item.values())
