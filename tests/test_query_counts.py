"""No N+1: the SQL statements a page runs do not grow with the rows it shows.

Each page is requested once to warm up, then again while counting every statement the app's
engine sends (SQLAlchemy's before_cursor_execute), first over a few referrals and then over ten
times as many. The two counts must be equal; a page that loaded something per row would add a
statement (or forty-five) per extra row.
"""
from __future__ import annotations

import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from portal.db import get_session, utcnow
from portal.models import Referral, Release, User
from portal.referrals import codes, service
from portal.referrals.inputs import ConsentInput, ReferralInput
from portal.releases.publish import publish_due
from tests.conftest import login
from tests.referral_world import build_world

FEW, MANY = 5, 50


@pytest.fixture
def world(app):
    return build_world(app)


@contextmanager
def counting(app):
    """Every statement the app's engine executes inside the block, in order."""
    statements: list[str] = []
    engine = app.extensions["portal.db"].engine

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def statements_for(app, client, path: str, headers=None) -> list[str]:
    """Statements of one GET of `path`, after a first GET has warmed every per-process cache."""
    assert client.get(path, headers=headers).status_code == 200, path
    with counting(app) as statements:
        response = client.get(path, headers=headers)
    assert response.status_code == 200, path
    return statements


def add_referrals(app, world, count: int, days_ago: float = 0) -> list[uuid.UUID]:
    """Referrals from the hospital to the North team through the service layer, in every state a
    list shows: new, assigned to North's first staff member, accepted with contact attempts, in
    progress, handed off to the provider, and (the first of several) under a revoked consent."""
    made = []
    with app.app_context():
        db = get_session()
        ring, pdp = app.extensions["portal.keyring"], app.extensions["portal.pdp"]
        nurse, worker = db.get(User, world.nurse.id), db.get(User, world.north_staff.id)
        for i in range(count):
            at = utcnow() - timedelta(days=days_ago, minutes=count - i)
            ctx = service.Context(db, ring, pdp, nurse, at, notify=False)
            consent = ConsentInput("verbal", [world.north.id, world.provider.id], ["contact", "note"],
                                   at + timedelta(days=90), at)
            data = ReferralInput(receiver_org_id=world.north.id,
                                 person={"preferred_name": f"Person {i}", "phone": "+15550100100"},
                                 age_band="18_24", zone="N1", reason="assault", services=["intensive_mentoring"],
                                 urgency="urgent" if i % 3 == 0 else "routine", note=f"note {i}", consent=consent)
            referral = service.create_referral(ctx, data)
            ctx.actor = worker
            kind = i % 5
            if kind >= 1:
                service.assign(ctx, referral, worker.id)
            if kind >= 2:
                service.transition(ctx, referral, "accept")
                service.log_contact(ctx, referral, "no_answer", "tried the clinic number")
            if kind >= 3:
                service.log_contact(ctx, referral, "reached", None)
            if kind == 4 and i % 10 == 4:
                service.handoff(ctx, referral, world.provider.id)
            if i == 0 and count > 1:
                ctx.actor = nurse
                service.revoke_consent(ctx, referral)
            made.append(referral.id)
        db.commit()
    return made


def sign_in(app, user) -> object:
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    return client


PAGES = {
    "cvi inbox": ("north_staff", "/referrals/inbox", None),
    "cvi inbox, supervisor": ("north_admin", "/referrals/inbox", None),
    "inbox poll (htmx)": ("north_staff", "/referrals/inbox", {"HX-Request": "true"}),
    "sent list": ("nurse", "/referrals/sent", None),
    "api inbox list": ("north_staff", "/api/v1/referrals?box=inbox", None),
    "api sent list": ("nurse", "/api/v1/referrals?box=sent", None),
    "city dashboard": ("city_staff", "/dashboards/city", None),
}


@pytest.mark.parametrize("page", PAGES)
def test_list_pages_run_the_same_statements_for_five_and_fifty_rows(app, world, page):
    """The inbox, the sent list, their API twins and the city dashboard: a fixed number of statements."""
    who, path, headers = PAGES[page]
    client = sign_in(app, getattr(world, who))
    add_referrals(app, world, FEW)
    few = statements_for(app, client, path, headers)
    add_referrals(app, world, MANY - FEW)
    many = statements_for(app, client, path, headers)
    assert len(many) == len(few), _difference(few, many, f"{FEW} rows", f"{MANY} rows")


def test_detail_page_runs_the_same_statements_for_one_and_ten_contact_attempts(app, world):
    """A referral's page and its API twin: events and attempts by several workers load at once."""
    (referral_id,) = add_referrals(app, world, 1)
    work(app, world.north_admin, referral_id, lambda ctx, referral: (
        service.transition(ctx, referral, "accept"), service.log_contact(ctx, referral, "no_answer", "first try")))
    client = sign_in(app, world.north_admin)
    paths = (f"/referrals/{referral_id}", f"/api/v1/referrals/{referral_id}")
    few = [statements_for(app, client, path) for path in paths]
    for i, worker in enumerate([world.north_staff, world.north_staff2, world.north_admin] * 3):
        def step(ctx, referral, i=i):
            service.log_contact(ctx, referral, "reached" if i == 0 else "left_message", f"try {i}")
            if i % 3 == 1:
                service.transition(ctx, referral, "hold", reason=next(iter(codes.HOLD_REASONS)))
                service.transition(ctx, referral, "resume")
        work(app, worker, referral_id, step)
    many = [statements_for(app, client, path) for path in paths]
    for path, before, after in zip(paths, few, many):
        assert len(after) == len(before), path + ": " + _difference(before, after, "1 attempt", "10 attempts")


def work(app, actor, referral_id, step) -> None:
    """Run one workflow step as `actor` through the service layer, and commit it."""
    with app.app_context():
        db = get_session()
        ctx = service.Context(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"],
                              db.get(User, actor.id), notify=False)
        step(ctx, db.get(Referral, referral_id))
        db.commit()


POLICE_PAGES = ("/aggregates/", "/aggregates/referrals_per_month", "/aggregates/referrals_per_quarter_by_zone",
                "/api/v1/aggregates", "/api/v1/aggregates/outcomes_per_quarter")


def test_police_pages_run_the_same_statements_for_few_and_many_releases(app, world):
    """Published releases are read in one query however many months have been released."""
    for month in range(14):  # history over fourteen months
        add_referrals(app, world, 3, days_ago=45 + 30 * month)
    client = sign_in(app, world.police_staff)
    counts = []
    for now in (utcnow() - timedelta(days=300), utcnow()):
        with app.app_context():
            published = publish_due(get_session(), app.extensions["portal.catalog"], now)
            assert published
        counts.append([statements_for(app, client, path) for path in POLICE_PAGES])
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(Release)) >= 10
    for path, before, after in zip(POLICE_PAGES, *counts):
        assert len(after) == len(before), path + ": " + _difference(before, after, "few releases", "many")


def _difference(few: list[str], many: list[str], small: str, large: str) -> str:
    """The statements that ran more often over more rows: the N+1 to fix."""
    extra = Counter(many) - Counter(few)
    return f"{len(few)} statements with {small}, {len(many)} with {large}; repeated: " + \
        "; ".join(f"{n}x {s[:160]}" for s, n in extra.most_common(5))
