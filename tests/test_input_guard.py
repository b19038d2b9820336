"""A NUL byte anywhere in a request is one clear 400 on every backend, before any view runs."""
import json

from sqlalchemy import func, select

from portal.db import get_session
from portal.models import Organization
from tests.conftest import csrf_token, login

NUL = "\x00"


def test_login_with_a_nul_byte_is_a_clear_400(client):
    token = csrf_token(client)
    response = client.post("/login", data={"email": f"a{NUL}@example.test", "password": "x" * 12,
                                           "csrf_token": token})
    assert response.status_code == 400 and "NUL character" in response.get_data(as_text=True)


def test_query_strings_and_json_bodies_with_nul_are_refused(client, make):
    org = make.org("cvi_team")
    user = make.user(org, "staff")
    login(client, user.email)
    listed = client.get("/api/v1/referrals?status=%00", headers={"Accept": "application/json"})
    assert listed.status_code == 400 and listed.json["detail"].startswith("The request contains a NUL")
    token = csrf_token(client, "/")
    created = client.post("/api/v1/referrals", data=json.dumps({"person": {"preferred_name": "A\u0000B"}}),
                          headers={"Content-Type": "application/json", "X-CSRFToken": token,
                                   "Accept": "application/json"})
    assert created.status_code == 400


def test_an_admin_form_with_nul_creates_nothing(app, client, make):
    admin_org = make.org("city_office")
    admin = make.user(admin_org, "org_admin", portal_admin=True)
    login(client, admin.email)
    with app.app_context():
        before = get_session().scalar(select(func.count()).select_from(Organization))
    token = csrf_token(client, "/admin/organizations/new")
    response = client.post("/admin/organizations/new", data={"name": f"Bad{NUL}Org", "kind": "cvi_team",
                                                             "csrf_token": token})
    assert response.status_code == 400
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(Organization)) == before
