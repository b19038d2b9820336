"""Police-facing releases: a fixed catalog, published after the lag, immutable, disclosure-controlled."""
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from portal.db import get_session, utcnow
from portal.demo import enroll_demo_users, load_demo_data
from portal.demo_history import load_demo_referrals
from portal.disclosure import Statistic, audit
from portal.models import Referral, Release, User
from portal.releases.publish import due_months, month_end, publish_due
from portal.releases.read import table_view
from tests.conftest import PASSWORD, csrf_token, login


@pytest.fixture
def history(app):
    """Demo organizations and two years of referral history made through the services."""
    with app.app_context():
        db = get_session()
        load_demo_data(db, PASSWORD)
        enroll_demo_users(db, app.extensions["portal.keyring"], pyotp.random_base32())  # as PORTAL_DEMO_TOTP_SECRET
        db.commit()
        load_demo_referrals(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"], 240, seed=3)
    return app


def _publish(app, now=None):
    with app.app_context():
        return [r.number for r in publish_due(get_session(), app.extensions["portal.catalog"], now or utcnow())]


def _all_statistics(app):
    with app.app_context():
        return [Statistic(s["key"], frozenset(s["atoms"]), s["value"], 0)
                for r in get_session().scalars(select(Release)) for s in r.statistics]


def _client(app, email):
    client = app.test_client()
    assert login(client, email).status_code == 302
    return client


def test_releases_cover_only_closed_months_past_the_lag_and_never_change(history):
    """Every due month gets one numbered release; re-running adds none; published numbers stay put."""
    app = history
    numbers = _publish(app)
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 20
    with app.app_context():
        db = get_session()
        latest = db.scalar(select(Release).order_by(Release.number.desc()))
        catalog = app.extensions["portal.catalog"]
        assert month_end(latest.period) + timedelta(days=catalog.lag_days) <= utcnow().date()
        assert due_months(db, catalog, utcnow().date()) == []
        before = {r.number: (r.tables, r.statistics) for r in db.scalars(select(Release))}
    assert _publish(app) == []
    # a referral backdated into a published month changes nothing already released
    with app.app_context():
        db = get_session()
        referral = db.scalar(select(Referral).order_by(Referral.created_at.desc()))
        referral.created_at = utcnow() - timedelta(days=200)
        db.commit()
        after = {r.number: (r.tables, r.statistics) for r in db.scalars(select(Release))}
    assert after == before


def test_every_release_passes_the_audit_against_all_others(history):
    """The LP audit over every published number of every release finds no suppressed cell pinned."""
    _publish(history)
    statistics = _all_statistics(history)
    assert any(s.value is None for s in statistics), "the history should have small cells to protect"
    assert audit(statistics, history.extensions["portal.catalog"].k) == []
    assert all(s.value is None or s.value == 0 or s.value >= 11 for s in statistics)


def test_no_live_counter(history):
    """A referral sent today changes no number a police partner can see until its month is released."""
    _publish(history)
    police = _client(history, "police@demo.test")
    before = police.get("/api/v1/aggregates/referrals_per_month").json
    with history.app_context():
        db = get_session()
        load_demo_referrals(db, history.extensions["portal.keyring"], history.extensions["portal.pdp"], 260, seed=3)
        db.execute(Referral.__table__.update().values(created_at=utcnow()).where(
            Referral.id.in_(select(Referral.id).order_by(Referral.created_at.desc()).limit(5))))
        db.commit()
    _publish(history)
    assert police.get("/api/v1/aggregates/referrals_per_month").json == before


def test_police_get_catalog_tables_and_nothing_else(history):
    _publish(history)
    police = _client(history, "police@demo.test")
    listing = police.get("/api/v1/aggregates").json
    assert {t["table"] for t in listing["items"]} == set(history.extensions["portal.catalog"].tables)
    body = police.get("/api/v1/aggregates/referrals_per_quarter_by_zone").json
    assert set(body) == {"table", "release", "columns", "rows", "suppressed_marker", "k", "released_through",
                         "clamped"}
    assert body["suppressed_marker"] == "<11" and body["columns"][0] == "period"
    assert all(v == "<11" or isinstance(v, (int, float)) for row in body["rows"] for v in row[1:])
    page = police.get("/aggregates/referrals_per_quarter_by_zone").get_data(as_text=True)
    assert "&lt;11" in page and "Release No." in page


@pytest.mark.parametrize("query, message", [
    ({"zone": "N1"}, "Unknown parameter"), ({"period": "week"}, "Unknown parameter"),
    ({"through": "2026-03-15"}, "periods finer than a month"), ({"release": "x"}, "release number"),
    ({"release": "9999"}, "no release 9999"),
])
def test_undeclared_parameters_and_finer_periods_are_refused(history, query, message):
    _publish(history)
    police = _client(history, "police@demo.test")
    response = police.get("/api/v1/aggregates/referrals_per_month", query_string=query)
    assert response.status_code == 400 and message in response.json["detail"]
    assert police.get("/aggregates/no_such_table").status_code == 400


def test_a_range_ending_in_the_lag_window_is_clamped_and_says_so(history):
    _publish(history)
    police = _client(history, "police@demo.test")
    future = (utcnow() + timedelta(days=60)).strftime("%Y-%m")
    body = police.get("/api/v1/aggregates/referrals_per_month", query_string={"through": future}).json
    assert body["clamped"] is True and body["rows"][-1][0] <= body["released_through"]
    page = police.get("/aggregates/referrals_per_month", query_string={"through": future}).get_data(as_text=True)
    assert "not published yet" in page


def test_ledger_is_the_city_office_s_and_never_the_police(history):
    _publish(history)
    assert _client(history, "police@demo.test").get("/aggregates/ledger").status_code == 403
    page = _client(history, "city@demo.test").get("/aggregates/ledger").get_data(as_text=True)
    assert "Release No. 1:" in page and "policy version" in page
    for email in ("hospital@demo.test", "cvi@demo.test"):
        assert _client(history, email).get("/aggregates/ledger").status_code == 403
        assert _client(history, email).get("/api/v1/aggregates").status_code == 403


def test_transparency_page_states_k_lag_and_policy_version(client, app):
    body = client.get("/transparency").get_data(as_text=True)
    catalog = app.extensions["portal.catalog"]
    assert f"k = {catalog.k}" in body and f"{catalog.lag_days} days after it closes" in body
    assert catalog.version in body and len(catalog.version) == 16
