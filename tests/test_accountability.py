"""Access history, the accounting of disclosures and the city's audit search, from every side."""
import re
import uuid

import pytest
from sqlalchemy import select

from portal.db import get_session
from portal.models import Referral
from tests.referral_world import build_world
from tests.test_referrals import NAME, NOTE, PHONE, act, form, send, sign_in

PERSONAL = (NAME, PHONE, NOTE, "867-5309")


@pytest.fixture
def world(app):
    return build_world(app)


@pytest.fixture
def handed_off(app, world):
    """Hospital → North (accepted, read) → Harbor Health; returns (original id, handoff id)."""
    nurse = sign_in(app, world.nurse)
    data = form(world, **{"consent.recipient_org_ids": [str(world.north.id), str(world.provider.id)],
                          "consent.data_categories": ["contact"]})
    assert send(nurse, data).status_code == 303
    north = sign_in(app, world.north_staff)
    north.get(f"/referrals/{data['referral_id']}")
    assert act(north, data["referral_id"], "accept").status_code == 303
    assert act(north, data["referral_id"], "handoff", receiver_org_id=str(world.provider.id)).status_code == 303
    with app.app_context():
        child = get_session().scalar(select(Referral.id).where(Referral.parent_id == uuid.UUID(data["referral_id"])))
    return data["referral_id"], str(child)


def clean(body: str) -> str:
    for value in PERSONAL:
        assert value not in body
    return body


def test_org_admin_sees_who_read_the_referral(app, world, handed_off):
    original, _ = handed_off
    page = sign_in(app, world.north_admin).get(f"/referrals/{original}/access-history")
    body = clean(page.get_data(as_text=True))
    assert page.status_code == 200
    assert "North Staff" in body and "referral.view_contact" in body and "referral.handoff" in body
    detail = sign_in(app, world.north_admin).get(f"/referrals/{original}").get_data(as_text=True)
    assert f"/referrals/{original}/access-history" in detail  # linked from the referral page


@pytest.mark.parametrize("who", ["north_staff", "east_admin", "police_staff", "city_staff", "portal_admin"])
def test_access_history_is_for_org_admins_of_the_referral_only(app, world, handed_off, who):
    original, _ = handed_off
    response = sign_in(app, getattr(world, who)).get(f"/referrals/{original}/access-history")
    assert response.status_code == 404
    assert original not in response.get_data(as_text=True)


def test_access_history_needs_a_login(app, handed_off, client):
    original, _ = handed_off
    response = client.get(f"/referrals/{original}/access-history")
    assert response.status_code == 302 and "/login" in response.location


def test_disclosure_report_lists_each_receiving_organization_and_consent(app, world, handed_off):
    original, child = handed_off
    body = clean(sign_in(app, world.nurse).get(f"/referrals/{original}/disclosures").get_data(as_text=True))
    assert "Mercy HVIP → North Team" in body and "North Team → Harbor Health" in body
    assert "verbal consent obtained" in body and "details shared: contact" in body
    assert re.search(r"Read by North Team</dt><dd>\d+ time\(s\)", body)
    assert re.search(r"Read by Harbor Health</dt><dd>never", body)
    # The team that received the handoff accounts for what it passed on, not what came before.
    provider = clean(sign_in(app, world.provider_staff).get(f"/referrals/{child}/disclosures").get_data(as_text=True))
    assert "North Team → Harbor Health" in provider and "Mercy HVIP" not in provider


@pytest.mark.parametrize("who", ["east_admin", "police_staff", "city_staff", "portal_admin"])
def test_disclosure_report_is_refused_outside_the_two_sides(app, world, handed_off, who):
    original, _ = handed_off
    assert sign_in(app, getattr(world, who)).get(f"/referrals/{original}/disclosures").status_code == 404


def test_city_searches_the_audit_log_by_actor_action_and_date(app, world, handed_off):
    city = sign_in(app, world.city_staff)
    everything = clean(city.get("/audit").get_data(as_text=True))
    assert "referral.handoff" in everything and "North Staff" in everything
    only = city.get(f"/audit?actor={world.north_staff.id}&action=referral.accept").get_data(as_text=True)
    rows = re.findall(r"<tr><td>\d+</td>", only)
    assert len(rows) == 1 and "referral.accept" in only
    assert "No entries match" in city.get("/audit?from=2001-01-01&to=2001-01-02").get_data(as_text=True)
    by_org = city.get(f"/audit?organization={world.east.id}").get_data(as_text=True)
    assert "No entries match" in by_org  # East has done nothing


@pytest.mark.parametrize("query", ["actor=not-a-uuid", "action=drop table", "from=31/12/2026", "from=2026-02-01&to=2026-01-01"])
def test_audit_search_refuses_bad_filters_clearly(app, world, query):
    response = sign_in(app, world.city_staff).get(f"/audit?{query}")
    assert response.status_code == 400 and 'class="error"' in response.get_data(as_text=True)


def test_audit_search_pages_through_older_entries(app, world, handed_off):
    city = sign_in(app, world.city_staff)
    for _ in range(110):
        city.get("/audit?action=home.view")
    first = city.get("/audit").get_data(as_text=True)
    link = re.search(r'href="(/audit\?before=\d+)"', first.replace("&amp;", "&"))
    assert link, "no link to older entries"
    older = city.get(link.group(1)).get_data(as_text=True)
    first_seqs = {int(s) for s in re.findall(r"<tr><td>(\d+)</td>", first)}
    older_seqs = {int(s) for s in re.findall(r"<tr><td>(\d+)</td>", older)}
    assert older_seqs and max(older_seqs) < min(first_seqs)


@pytest.mark.parametrize("who", ["police_staff", "north_admin", "nurse", "provider_staff"])
def test_only_the_city_searches_the_audit_log(app, world, who):
    response = sign_in(app, getattr(world, who)).get("/audit")
    assert response.status_code == 403 and "audit.search" not in response.get_data(as_text=True)


@pytest.mark.postgres_only
def test_every_audit_search_is_planned_for_its_own_filters(app, handed_off):
    """A generic plan cannot know whether an action is rare (its index) or common (the newest
    events first): on a 1M-event log a rare action's search went 1.5 -> 42 ms from the
    eleventh search of a worker on. Each search must be planned for its values."""
    from sqlalchemy import text

    from portal.audit.queries import AuditFilters, search
    with app.app_context():
        db = get_session()
        for _ in range(4):
            for action in ("referral.view_contact", "auth.login", "system.retention_run", "referral.accept"):
                search(db, AuditFilters(action=action))
        generic, custom = db.execute(text(
            "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) FROM pg_prepared_statements "
            "WHERE statement LIKE '%FROM audit_events%' AND cardinality(parameter_types) > 0")).one()
        db.rollback()
    assert custom > 0 and generic == 0, (generic, custom)
