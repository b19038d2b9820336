"""The partial indexes serve the queries they were made for (bench/README.md measured them).

A partial index is used only when the planner can prove the query implies its predicate and the
order matches; a harmless-looking edit to a query (a bound status list, another ORDER BY) would
silently lose it. On PostgreSQL, with sequential scans and sorts priced out, each query's plan
must still be possible through its index: otherwise it would need one of them.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, text

from portal.db import get_session, utcnow
from portal.models import User
from portal.referrals import maintenance, queries
from tests.referral_world import build_world


@contextmanager
def first_statement(db):
    """The first SQL statement the block sends, with its parameters."""
    seen = []
    engine = db.get_bind()

    def keep(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", keep)


def plan(db, statement, parameters) -> str:
    db.execute(text("SET LOCAL enable_seqscan = off"))
    db.execute(text("SET LOCAL enable_sort = off"))
    db.execute(text("SET LOCAL enable_bitmapscan = off"))
    return "\n".join(row[0] for row in db.connection().exec_driver_sql(f"EXPLAIN {statement}", parameters))


@pytest.mark.postgres_only
def test_the_inbox_walks_its_partial_index_in_page_order(app, database_url):
    assert database_url.startswith("postgresql")
    world = build_world(app)
    with app.app_context():
        db = get_session()
        staff = db.get(User, world.north_staff.id)
        with first_statement(db) as seen:
            queries.inbox(db, staff)
        explained = plan(db, *seen[0])
        db.rollback()
    assert "ix_referrals_inbox_open" in explained, explained
    assert "Sort" not in explained, explained


@pytest.mark.postgres_only
def test_retention_claims_use_their_partial_indexes(app, database_url):
    assert database_url.startswith("postgresql")
    with app.app_context():
        db = get_session()
        with first_statement(db) as seen:
            maintenance.run_retention(db, lambda: None, 180, now=utcnow() + timedelta(days=1))
        claims = [s for s in seen if "FOR UPDATE SKIP LOCKED" in s[0]]
        explained = [plan(db, *claim) for claim in claims[:2]]
        db.rollback()
    assert "ix_consents_unrevoked_expiry" in explained[0], explained[0]
    assert "ix_referrals_purge_due" in explained[1], explained[1]


def test_the_index_predicates_name_the_statuses_the_code_means():
    """The predicates are SQL text (a partial index needs a constant); the status lists in them must
    stay those of portal/referrals/codes.py and of the queries that rely on the indexes."""
    import re

    from portal.models import referral as model
    from portal.referrals import codes

    def statuses(predicate: str) -> set[str]:
        return set(re.findall(r"'([a-z_]+)'", re.search(r"status IN \(([^)]*)\)", predicate).group(1)))

    assert statuses(model.OPEN) == set(codes.OPEN_STATUSES) == set(queries.OPEN.right.value)
    assert statuses(model.PURGE_DUE) == set(codes.CLOSED_STATUSES) - {"revoked"} == \
        set(maintenance.PURGEABLE.right.value)


@pytest.mark.postgres_only
def test_referrals_are_vacuumed_often_enough_for_index_only_scans(app):
    """Migration c0a0d17e0011: the response times' covering index is read alone only where the
    visibility map is current, and the recent weeks it serves are the rows being updated."""
    with app.app_context():
        options = get_session().execute(text("SELECT reloptions FROM pg_class WHERE relname = 'referrals'")).scalar()
    assert sorted(options) == ["autovacuum_analyze_scale_factor=0.01", "autovacuum_vacuum_insert_scale_factor=0.01",
                               "autovacuum_vacuum_scale_factor=0.01"]
