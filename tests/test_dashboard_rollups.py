"""The city dashboard's daily rollups: always what a GROUP BY over the referrals gives.

A reference computed in the test (referrals loaded and counted in Python, and the dashboard's
previous queries over `referrals`, kept here) is compared with the rollups and the tables read from
them after the real services send, accept, decline, complete, hand off and cancel referrals, after
retention, after raw edits the triggers must see, under concurrent writers and refreshing readers
on PostgreSQL, and after `portal dashboards rebuild`.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import date, timedelta, timezone

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from portal.config import ROOT
from portal.dashboards import queries, rollups
from portal.db import get_session
from portal.models import AuditEvent, DailyCount, DailyService, DirtyDay, MonthlyCount, MonthlyService, User, referral_services
from portal.models.rollup import NO_OUTCOME
from portal.referrals import maintenance, service
from tests.conftest import KEK, SECRET
from tests.referral_world import build_world
from tests.test_dashboards import PLAN, T0, populate

R = queries.REFERRALS.c
WIDE = queries.Filters(date(2023, 1, 1), date(2025, 12, 31))
SERVICES = ("intensive_mentoring", "care_management", "conflict_mediation", "behavioral_health", "life_coaching",
            "education_housing_employment", "social_networks")


@pytest.fixture
def world(app):
    return build_world(app)


@pytest.fixture
def ids(app, world):
    return populate(app, world)


# -- the reference --------------------------------------------------------------------------------
def reference_rollups(db) -> tuple[dict, dict]:
    """The rollups' rows from the referrals themselves, counted in Python (the test may load them)."""
    counts, services = Counter(), Counter()
    for created, sender, receiver, zone, urgency, status, outcome, accepted in db.execute(
            select(R.created_at, R.sender_org_id, R.receiver_org_id, R.zone_id, R.urgency, R.status, R.outcome,
                   R.accepted_at)):
        key = (created.astimezone(timezone.utc).date(), sender, receiver, zone, urgency)
        counts[(*key, status, outcome or NO_OUTCOME)] += 1
        counts[("accepted", *key, status, outcome or NO_OUTCOME)] += accepted is not None
    for created, sender, receiver, zone, urgency, name in db.execute(
            select(R.created_at, R.sender_org_id, R.receiver_org_id, R.zone_id, R.urgency, referral_services.c.service)
            .join(referral_services, referral_services.c.referral_id == R.id)):
        services[(created.astimezone(timezone.utc).date(), sender, receiver, zone, urgency, name)] += 1
    by_key = {key: (n, counts[("accepted", *key)]) for key, n in counts.items() if key[0] != "accepted"}
    return by_key, dict(services)


def by_month(counts: dict, services: dict) -> tuple[dict, dict]:
    """Daily rollups summed per calendar month, as the monthly rollups must hold them."""
    months_counts, months_services = Counter(), Counter()
    for (day, *keys), (n, accepted) in counts.items():
        months_counts[(day.replace(day=1), *keys, "n")] += n
        months_counts[(day.replace(day=1), *keys, "accepted")] += accepted
    for (day, *keys), n in services.items():
        months_services[(day.replace(day=1), *keys)] += n
    return ({key[:-1]: (n, months_counts[(*key[:-1], "accepted")]) for key, n in months_counts.items()
             if key[-1] == "n"}, dict(months_services))


def stored_rollups(db) -> tuple[dict, dict]:
    c, s = DailyCount.__table__.c, DailyService.__table__.c
    counts = {(day, *keys): (n, accepted) for day, *keys, n, accepted in db.execute(
        select(c.day, c.sender_org_id, c.receiver_org_id, c.zone_id, c.urgency, c.status, c.outcome, c.referrals,
               c.accepted))}
    services = {tuple(keys): n for *keys, n in db.execute(
        select(s.day, s.sender_org_id, s.receiver_org_id, s.zone_id, s.urgency, s.service, s.referrals))}
    return counts, services


def stored_monthly(db) -> tuple[dict, dict]:
    c, s = MonthlyCount.__table__.c, MonthlyService.__table__.c
    counts = {(month, *keys): (n, accepted) for month, *keys, n, accepted in db.execute(
        select(c.month, c.sender_org_id, c.receiver_org_id, c.zone_id, c.urgency, c.status, c.outcome, c.referrals,
               c.accepted))}
    services = {tuple(keys): n for *keys, n in db.execute(
        select(s.month, s.sender_org_id, s.receiver_org_id, s.zone_id, s.urgency, s.service, s.referrals))}
    return counts, services


def previous_counts_by_period(db, f, dimension):
    """The dashboard's query before the rollups: a GROUP BY over the referrals of the cohort."""
    period = queries.period_start(R.created_at, f.period, db.get_bind().dialect.name)
    key = referral_services.c.service if dimension == "service" else R[queries.DIMENSIONS[dimension]]
    statement = select(period, key, func.count()).select_from(queries.REFERRALS)
    if dimension == "service":
        statement = statement.join(referral_services, referral_services.c.referral_id == R.id)
    return db.execute(statement.where(*f.where()).group_by(period, key)).all()


def previous_answer_counts(db, f):
    return db.execute(select(R.receiver_org_id, func.count(), func.count(R.accepted_at),
                             func.count().filter(R.status == "declined"), func.count().filter(R.status == "sent"))
                      .where(*f.where()).group_by(R.receiver_org_id)).all()


def previous_outcome_counts(db, f):
    return db.execute(select(R.outcome, func.count()).where(*f.where(), R.outcome.is_not(None))
                      .group_by(R.outcome)).all()


def filter_sets(db) -> list[queries.Filters]:
    """Both periods over the whole span and over part of it, and each dimension filter."""
    sets = [WIDE, queries.Filters(WIDE.start, WIDE.end, "month"), queries.Filters(date(2024, 3, 5), date(2024, 3, 12)),
            queries.Filters(date(2024, 3, 12), date(2024, 4, 2), "month"),  # no whole month: days only
            queries.Filters(date(2024, 3, 1), date(2024, 3, 31), "month"),  # one whole month, no days
            queries.Filters(date(2024, 2, 20), date(2024, 4, 1), "month"),  # days, March whole, a day
            queries.Filters(date(2024, 3, 1), date(2024, 4, 30), "week")]  # whole months, but weeks: days only
    for zone, receiver, sender, urgency in db.execute(
            select(R.zone_id, R.receiver_org_id, R.sender_org_id, R.urgency).distinct()):
        sets += [queries.Filters(WIDE.start, WIDE.end, zone_id=zone), queries.Filters(WIDE.start, WIDE.end,
                                                                                      receiver_id=receiver),
                 queries.Filters(WIDE.start, WIDE.end, sender_id=sender), queries.Filters(WIDE.start, WIDE.end,
                                                                                          urgency=urgency)]
    return sets


def assert_dashboard_exact(app) -> None:
    """Refresh, then: the rollups equal the reference, and every count query equals its previous form."""
    with app.app_context():
        db = get_session()
        rollups.refresh(db)
        db.commit()
        assert db.scalar(select(func.count()).select_from(DirtyDay)) == 0
        reference = reference_rollups(db)
        assert stored_rollups(db) == reference
        assert stored_monthly(db) == by_month(*reference)
        for f in filter_sets(db):
            for dimension in ("status", "team", "sender", "zone", "urgency", "service"):
                assert sorted(queries.counts_by_period(db, f, dimension)) == \
                    sorted(previous_counts_by_period(db, f, dimension)), (f, dimension)
            assert sorted(queries.answer_counts(db, f)) == sorted(previous_answer_counts(db, f)), f
            assert sorted(queries.outcome_counts(db, f)) == sorted(previous_outcome_counts(db, f)), f


def _ctx(app, db, user_id, now=None):
    return service.Context(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"],
                           db.get(User, user_id) if user_id else None, now, notify=False)


# -- the rollups follow every change ----------------------------------------------------------------
def test_rollups_equal_the_referrals_after_the_workflow_and_retention(app, world, ids):
    """Sent, accepted, declined, reached, completed, handed off, cancelled, on hold, and then consents
    expired and personal fields purged by retention: every count equals the GROUP BY over referrals."""
    assert_dashboard_exact(app)
    with app.app_context():
        db = get_session()
        ctx = _ctx(app, db, world.north_staff.id, T0 + 12 * timedelta(days=1))
        service.transition(ctx, db.get(queries.Referral, ids["r2"]), "hold", reason="hospitalized")
        db.commit()
    assert_dashboard_exact(app)
    with app.app_context():
        db = get_session()
        done = maintenance.run_retention(db, lambda: _ctx(app, db, None), 30, T0 + 400 * timedelta(days=1))
        db.commit()
        assert done["expired_consents"] > 0
        assert db.scalar(select(func.count()).select_from(queries.REFERRALS).where(R.status == "revoked")) > 0
    assert_dashboard_exact(app)


def test_the_dashboard_page_reads_refreshed_rollups(app, world, ids):
    """The page's tables after new work equal the previous queries' numbers (the read refreshes first)."""
    with app.app_context():
        db = get_session()
        ref = queries.reference(db)
        before = queries.build_table(db, WIDE, ref, "by-status").totals
        db.commit()
        ctx = _ctx(app, db, world.north_staff.id, T0 + 30 * timedelta(days=1))
        service.transition(ctx, db.get(queries.Referral, ids["r6"]), "accept")
        db.commit()
        assert db.scalar(select(func.count()).select_from(DirtyDay)) > 0
        after = queries.build_table(db, WIDE, ref, "by-status")
        db.commit()
        columns = after.columns
        assert after.totals[columns.index("Accepted")] == before[columns.index("Accepted")] + 1
        assert after.totals[columns.index("Sent")] == before[columns.index("Sent")] - 1
        assert sorted(queries.counts_by_period(db, WIDE, "status")) == \
            sorted(previous_counts_by_period(db, WIDE, "status"))


def test_raw_edits_mark_their_days_and_other_columns_do_not(app, world, ids):
    """The triggers, not the services: a moved sending time (both days), an added and a removed
    service, a deleted referral; an update of a column no rollup counts marks nothing."""
    assert_dashboard_exact(app)
    key = (lambda v: v.hex) if app.extensions["portal.db"].engine.dialect.name == "sqlite" else (lambda v: v)
    with app.app_context():
        db = get_session()
        db.execute(text("UPDATE referrals SET retaliation_risk = NOT retaliation_risk, note_enc = NULL"))
        db.commit()
        assert db.scalar(select(func.count()).select_from(DirtyDay)) == 0
        db.execute(queries.REFERRALS.update().where(R.id == ids["r2"]).values(created_at=T0 + timedelta(days=20)))
        db.execute(text("INSERT INTO referral_services (referral_id, service) VALUES (:id, 'social_networks')"),
                   {"id": key(ids["r3"])})
        db.execute(text("DELETE FROM referral_services WHERE referral_id = :id AND service = 'intensive_mentoring'"),
                   {"id": key(ids["r4"])})
        db.execute(text("DELETE FROM referral_events WHERE referral_id = :id"), {"id": key(ids["r7"])})
        db.execute(text("DELETE FROM referrals WHERE id = :id"), {"id": key(ids["r7"])})
        db.commit()
        dirty = set(db.scalars(select(DirtyDay.day)))
        assert {T0.date() + timedelta(days=n) for n in (1, 20, 2, 7, 10)} <= dirty
    assert_dashboard_exact(app)


def test_triggers_exist_at_head(app):
    """A later migration that rebuilds referrals (SQLite batch mode) must not lose them."""
    with app.app_context():
        db = get_session()
        if db.get_bind().dialect.name == "sqlite":
            names = set(db.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))
            expected = {"dashboard_referrals_insert", "dashboard_referrals_delete", "dashboard_referrals_update",
                        "dashboard_referral_services_insert", "dashboard_referral_services_delete"}
        else:
            names = set(db.scalars(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")))
            expected = {"dashboard_referrals_insert_delete", "dashboard_referrals_update",
                        "dashboard_referral_services_insert_delete"}
        assert expected <= names


def test_the_refresh_fetches_days_only(app, world, ids):
    """What the refresh brings into Python is the claimed days, never a referral."""
    with app.app_context():
        db = get_session()
        seen = []
        real = db.execute

        def spy(statement, *args, **kwargs):
            result = real(statement, *args, **kwargs)
            seen.append(statement)
            return result

        db.execute = spy
        assert rollups.refresh(db) == len({(at).date() for *_, at, _steps in PLAN.values()} | {T0.date()})
        for statement in seen:
            if statement.is_select:
                sql = str(statement)  # whether any day is dirty; the lock that makes refreshes take turns
                assert sql.startswith("SELECT EXISTS") or sql.startswith("SELECT pg_advisory_xact_lock"), sql
            elif getattr(statement, "_returning", None):
                assert [c.name for c in statement._returning] == ["day"]
        db.rollback()


def test_rebuild_command_restores_emptied_rollups(app, world, ids, database_url, tmp_path):
    """`portal dashboards rebuild` recomputes every day: emptied rollups (no day dirty) come back whole."""
    assert_dashboard_exact(app)
    with app.app_context():
        db = get_session()
        expected = stored_rollups(db), stored_monthly(db)
        for table in (DailyCount, DailyService, MonthlyCount, MonthlyService):
            db.execute(table.__table__.delete())
        db.commit()
        rollups.refresh(db)  # nothing is dirty: a refresh cannot know
        assert stored_rollups(db) == stored_monthly(db) == ({}, {})
        db.rollback()
    result = run_cli(database_url, tmp_path, "dashboards", "rebuild")
    assert result.returncode == 0, result.stderr
    assert "rollups rebuilt" in result.stdout
    with app.app_context():
        assert (stored_rollups(get_session()), stored_monthly(get_session())) == expected
        # An operator's command: it is in the audit log, by no account.
        event = get_session().scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
        assert (event.action, event.actor_id, event.decision) == ("system.dashboards_rebuilt", None, "allow")
    assert_dashboard_exact(app)


def test_refresh_command_brings_changed_days_up_to_date_before_any_reader(app, world, ids, database_url, tmp_path):
    """`portal dashboards refresh` (cron) re-aggregates the dirty days, so no page request pays for them."""
    assert_dashboard_exact(app)
    with app.app_context():
        db = get_session()
        before = stored_rollups(db)
        db.execute(queries.REFERRALS.update().where(R.id == ids["r2"]).values(urgency="urgent", status="declined"))
        db.commit()
        assert db.scalar(select(func.count()).select_from(DirtyDay)) == 1
        assert stored_rollups(db) == before != reference_rollups(db)
        db.rollback()
    result = run_cli(database_url, tmp_path, "dashboards", "refresh")
    assert result.returncode == 0, result.stderr
    assert "dashboard rollups: 1 day(s) refreshed in" in result.stdout
    with app.app_context():
        db = get_session()
        assert db.scalar(select(func.count()).select_from(DirtyDay)) == 0
        reference = reference_rollups(db)
        assert (stored_rollups(db), stored_monthly(db)) == (reference, by_month(*reference))
    assert "0 day(s) refreshed" in run_cli(database_url, tmp_path, "dashboards", "refresh").stdout


def run_cli(database_url, tmp_path, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_ENV="development", PORTAL_DATABASE_URL=database_url, PORTAL_SECRET_KEY=SECRET,
               PORTAL_INSTANCE_PATH=str(tmp_path / "instance"), PORTAL_KEK=KEK)
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


# -- concurrency ------------------------------------------------------------------------------------
@pytest.mark.postgres_only
def test_concurrent_writers_and_refreshing_readers_lose_and_double_nothing(app, world, ids, database_url):
    """Writers change counted columns (status, urgency, accepted_at, sending day, services) in
    transactions that stay open a moment after their change, while two readers refresh in theirs:
    once all have committed, one last refresh leaves rollups equal to a full recompute."""
    assert_dashboard_exact(app)
    engine = create_engine(database_url, pool_size=8)
    referral_ids = list(ids.values())
    stop = threading.Event()
    errors: list[BaseException] = []
    refreshed = Counter()

    def writer(mine: list[uuid.UUID], seed: int):
        rng = random.Random(seed)
        try:
            for _ in range(60):
                with engine.begin() as conn:
                    referral = rng.choice(mine)
                    change = rng.randrange(5)
                    if change == 0:
                        conn.execute(text("UPDATE referrals SET status = :s WHERE id = :id"),
                                     {"s": rng.choice(["sent", "accepted", "declined", "in_progress", "completed"]),
                                      "id": referral})
                    elif change == 1:
                        conn.execute(text("UPDATE referrals SET urgency = CASE urgency WHEN 'urgent' THEN 'routine' "
                                          "ELSE 'urgent' END WHERE id = :id"), {"id": referral})
                    elif change == 2:
                        conn.execute(text("UPDATE referrals SET accepted_at = CASE WHEN accepted_at IS NULL "
                                          "THEN created_at + interval '1 hour' END WHERE id = :id"), {"id": referral})
                    elif change == 3:
                        conn.execute(text("UPDATE referrals SET created_at = created_at + :d * interval '1 day' "
                                          "WHERE id = :id"), {"d": rng.choice([-1, 1]), "id": referral})
                    else:
                        conn.execute(text("INSERT INTO referral_services (referral_id, service) VALUES (:id, :s) "
                                          "ON CONFLICT DO NOTHING"), {"id": referral, "s": rng.choice(SERVICES)})
                        conn.execute(text("DELETE FROM referral_services WHERE referral_id = :id AND service = :s"),
                                     {"id": referral, "s": rng.choice(SERVICES)})
                    time.sleep(rng.uniform(0, 0.02))  # still uncommitted while a reader refreshes
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    def reader(name: str):
        try:
            while not stop.is_set():
                with Session(engine) as db:
                    refreshed[name] += rollups.refresh(db)
                    db.execute(select(func.sum(DailyCount.referrals)))
                    time.sleep(0.005)
                    db.commit()
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    writers = [threading.Thread(target=writer, args=(referral_ids[i::3], i)) for i in range(3)]
    readers = [threading.Thread(target=reader, args=(name,)) for name in ("a", "b")]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    for thread in readers:
        thread.join(timeout=60)
    engine.dispose()
    assert not errors, errors
    assert refreshed["a"] and refreshed["b"]  # both readers did refresh while the writers wrote
    assert_dashboard_exact(app)


def test_the_retention_command_leaves_no_day_for_a_page_to_refresh(app, world, ids):
    """Retention revokes referrals sent on days across the history; the nightly command refreshes
    their rollups itself, so the next dashboard page re-aggregates nothing."""
    from portal.cli import cli
    with app.app_context():
        db = get_session()
        assert db.scalar(select(func.count()).select_from(DirtyDay)) > 0  # the fixture's referrals
    result = app.test_cli_runner().invoke(cli, ["retention", "run"])
    assert result.exit_code == 0, result.output
    assert "day(s) refreshed" in result.output
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(DirtyDay)) == 0
    assert_dashboard_exact(app)
