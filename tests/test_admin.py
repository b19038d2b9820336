"""Administration of organizations, zones and accounts, and what every other principal gets."""
import re

import pytest
from sqlalchemy import func, select

from portal.auth import account_mail, tokens
from portal.db import get_session
from portal.models import AccountToken, Organization, User, UserSession, Zone
from tests.conftest import csrf_token, login

CHOSEN = "westside walkers keep the peace"


def _invitation_link(app, email: str) -> str:
    """The path the invitation mail carries, read from the outbox (no mail server here)."""
    with app.app_context():
        db = get_session()
        token = db.scalar(select(AccountToken).join(User, AccountToken.user_id == User.id).where(User.email == email))
        return account_mail.link("", token.purpose, tokens.raw_token(app.extensions["portal.keyring"], token))


def _count(app, model, *where):
    with app.app_context():
        return get_session().scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def portal_admin(login_as):
    return login_as("city_office", "staff", portal_admin=True)


def test_portal_admin_creates_zone_then_organization_with_first_admin_who_can_sign_in(app, client, portal_admin):
    """The whole onboarding path: zone, organization serving it, first org_admin invited by mail, who
    chooses a password through the link and signs in."""
    token = csrf_token(client, "/admin/zones")
    response = client.post("/admin/zones", data={"code": "w1", "label": "Westside", "csrf_token": token})
    assert response.status_code == 303
    with app.app_context():
        zone = get_session().scalar(select(Zone).where(Zone.code == "W1"))
    token = csrf_token(client, "/admin/organizations/new")
    response = client.post("/admin/organizations/new", data={
        "name": "Westside Peace Walkers", "kind": "cvi_team", "zones": [str(zone.id)],
        "admin_email": "Lead@Westside.test", "admin_name": "Wes Lead", "csrf_token": token})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "Invitation sent" in body and "Temporary password" not in body
    with app.app_context():
        org = get_session().scalar(select(Organization).where(Organization.name == "Westside Peace Walkers"))
        assert [z.code for z in org.zones] == ["W1"]
        lead = get_session().scalar(select(User).where(User.email == "lead@westside.test"))
        assert lead.role == "org_admin" and lead.organization_id == org.id and not lead.is_portal_admin
        assert lead.password_hash is None  # nobody but the lead ever knows the password
    other = app.test_client()
    assert other.get(_invitation_link(app, "lead@westside.test")).status_code == 303
    chosen = other.post("/password/new", data={"password": CHOSEN, "confirm": CHOSEN,
                                               "csrf_token": csrf_token(other, "/password/new")})
    assert chosen.status_code == 303
    first = login(other, "lead@westside.test", CHOSEN)  # an org_admin sets up two-step sign-in first
    assert first.status_code == 200 and "Your recovery codes" in first.get_data(as_text=True)
    assert "Westside Peace Walkers" in other.get(f"/admin/organizations/{org.id}").get_data(as_text=True)


def test_duplicate_email_is_a_form_error_and_writes_nothing(app, client, make, portal_admin):
    """Creating an organization whose first admin's e-mail is taken: clear error, no org, no user."""
    existing = make.user(make.org())
    users_before, orgs_before = _count(app, User), _count(app, Organization)
    token = csrf_token(client, "/admin/organizations/new")
    response = client.post("/admin/organizations/new", data={
        "name": "Duplicate Test Org", "kind": "service_provider",
        "admin_email": existing.email.upper(), "admin_name": "Someone", "csrf_token": token})
    assert response.status_code == 400
    assert "An account with this e-mail already exists." in response.get_data(as_text=True)
    assert (_count(app, User), _count(app, Organization)) == (users_before, orgs_before)


def test_org_admin_creates_user_in_own_organization(app, client, login_as):
    admin = login_as("hospital_program", "org_admin")
    token = csrf_token(client, f"/admin/organizations/{admin.organization_id}/users/new")
    response = client.post(f"/admin/organizations/{admin.organization_id}/users/new", data={
        "email": "nurse@mercy.test", "display_name": "Night Nurse", "role": "staff", "csrf_token": token})
    assert response.status_code == 200 and "Invitation sent" in response.get_data(as_text=True)
    assert _count(app, User, User.email == "nurse@mercy.test", User.organization_id == admin.organization_id) == 1
    assert _count(app, AccountToken, AccountToken.purpose == "invite") == 1


def test_org_admin_duplicate_email_in_own_org_is_a_form_error(app, client, make, login_as):
    admin = login_as("cvi_team", "org_admin")
    taken = make.user(make.org("hospital_program"))
    before = _count(app, User)
    token = csrf_token(client, f"/admin/organizations/{admin.organization_id}/users/new")
    response = client.post(f"/admin/organizations/{admin.organization_id}/users/new", data={
        "email": taken.email, "display_name": "Copy", "role": "staff", "csrf_token": token})
    assert response.status_code == 400 and "already exists" in response.get_data(as_text=True)
    assert _count(app, User) == before


def test_org_admin_changes_role_and_deactivates_own_user(app, client, make, login_as):
    admin = login_as("cvi_team", "org_admin")
    with app.app_context():
        org = get_session().get(Organization, admin.organization_id)
    worker = make.user(org, "staff")
    worker_client = app.test_client()
    login(worker_client, worker.email)
    token = csrf_token(client, "/")
    response = client.post(f"/admin/users/{worker.id}/role", data={"role": "supervisor", "csrf_token": token},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200 and f'id="user-{worker.id}"' in response.get_data(as_text=True)
    response = client.post(f"/admin/users/{worker.id}/active", data={"csrf_token": token})
    assert response.status_code == 303
    with app.app_context():
        stored = get_session().get(User, worker.id)
        assert (stored.role, stored.active) == ("supervisor", False)
    assert _count(app, UserSession, UserSession.user_id == worker.id) == 0
    assert worker_client.get("/").status_code == 302  # the worker's open session ended


def test_nobody_deactivates_or_demotes_themselves(app, client, login_as):
    admin = login_as("cvi_team", "org_admin")
    token = csrf_token(client, "/")
    response = client.post(f"/admin/users/{admin.id}/active", data={"csrf_token": token}, headers={"HX-Request": "true"})
    assert "cannot deactivate your own account" in response.get_data(as_text=True)
    client.post(f"/admin/users/{admin.id}/role", data={"role": "staff", "csrf_token": token})
    with app.app_context():
        stored = get_session().get(User, admin.id)
        assert (stored.role, stored.active) == ("org_admin", True)


def test_org_admin_of_another_organization_gets_404_for_everything(app, client, make, login_as):
    """Another organization's admin cannot see, create in, or change anything of ours: 404, nothing written."""
    login_as("cvi_team", "org_admin")
    theirs = make.org("cvi_team")
    victim = make.user(theirs, "staff")
    token = csrf_token(client, "/")
    assert client.get(f"/admin/organizations/{theirs.id}").status_code == 404
    assert client.get(f"/admin/organizations/{theirs.id}/users/new").status_code == 404
    assert client.post(f"/admin/organizations/{theirs.id}/users/new", data={
        "email": "plant@evil.test", "display_name": "Plant", "role": "org_admin", "csrf_token": token}).status_code == 404
    assert client.post(f"/admin/users/{victim.id}/role", data={"role": "org_admin", "csrf_token": token}).status_code == 404
    assert client.post(f"/admin/users/{victim.id}/active", data={"csrf_token": token}).status_code == 404
    with app.app_context():
        stored = get_session().get(User, victim.id)
        assert (stored.role, stored.active) == ("staff", True)
    assert _count(app, User, User.email == "plant@evil.test") == 0


def test_unknown_ids_answer_404_like_denied_ones(client, login_as):
    login_as("cvi_team", "org_admin")
    token = csrf_token(client, "/")
    assert client.get("/admin/organizations/00000000-0000-4000-8000-000000000000").status_code == 404
    assert client.post("/admin/users/00000000-0000-4000-8000-000000000000/active",
                       data={"csrf_token": token}).status_code == 404
    assert client.get("/admin/organizations/not-a-uuid").status_code == 404


@pytest.mark.parametrize("kind, role", [("police_partner", "staff"), ("police_partner", "org_admin"),
                                        ("cvi_team", "staff"), ("hospital_program", "supervisor"),
                                        ("city_office", "org_admin")])
def test_non_admins_get_no_portal_administration(client, make, login_as, kind, role):
    """Only portal admins list or create organizations and zones (403 for pages, 404 for records)."""
    login_as(kind, role)
    other = make.org("hospital_program")
    token = csrf_token(client, "/")
    assert client.get("/admin/organizations").status_code == 403
    assert client.get("/admin/organizations/new").status_code == 403
    assert client.get("/admin/zones").status_code == 403
    assert client.post("/admin/zones", data={"code": "X9", "label": "x", "csrf_token": token}).status_code == 403
    assert client.get(f"/admin/organizations/{other.id}").status_code == 404


def test_police_home_has_no_path_to_referrals(client, login_as):
    login_as("police_partner", "staff")
    body = client.get("/").get_data(as_text=True)
    assert "aggregate" in body.lower()
    assert "referral" not in " ".join(re.findall(r"<a [^>]*>[^<]*</a>", body)).lower()


def test_police_account_cannot_be_made_portal_admin(app):
    from portal.admin import service
    from portal.errors import ServiceError
    with app.app_context():
        db = get_session()
        org = service.create_organization(db, "Police", "police_partner", [])
        with pytest.raises(ServiceError, match="police"):
            service.create_user(db, org, "chief@police.test", "Chief", "org_admin", portal_admin=True)


def test_visitor_is_sent_to_login_and_forged_post_is_refused(client, make):
    """A logged-out visitor gets a login redirect; a POST without a token gets 400 and changes nothing."""
    user = make.user(make.org())
    assert client.get("/admin/zones").status_code == 302
    assert client.post(f"/admin/users/{user.id}/active").status_code == 400
    assert client.post("/admin/zones", data={"code": "Q1", "label": "q"}).status_code == 400


def test_org_admin_cannot_change_a_portal_admin_of_the_same_organization(app, client, make, login_as):
    """A city org admin shares an organization with the portal admin, yet cannot deactivate or demote them."""
    city = make.org("city_office")
    admin = make.user(city, "staff", portal_admin=True)
    login_as(org=city, role="org_admin")
    token = csrf_token(client, "/")
    assert client.post(f"/admin/users/{admin.id}/active", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/admin/users/{admin.id}/role", data={"role": "org_admin", "csrf_token": token}).status_code == 404
    with app.app_context():
        stored = get_session().get(User, admin.id)
        assert (stored.active, stored.role) == (True, "staff")
