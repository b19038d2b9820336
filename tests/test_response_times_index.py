"""The city dashboard's response times on PostgreSQL: read from the covering index alone, and the
float8 durations are exactly those of the numeric epoch arithmetic they replaced.

The statement is fast at city scale only while every column it reads is in
ix_referrals_response_times and its WHERE implies the index's predicate; a new filter column or
a reworded condition would silently send it back to the referral rows. With sequential, bitmap
and plain index scans priced out, its plan must still be possible as an index-only scan.
"""
from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlalchemy import column, text
from sqlalchemy.dialects import postgresql

from portal.dashboards import queries
from portal.db import get_session
from tests.test_partial_indexes import first_statement


def index_only_plan(db, statement, parameters) -> str:
    for setting in ("enable_seqscan", "enable_bitmapscan", "enable_indexscan"):
        db.execute(text(f"SET LOCAL {setting} = off"))
    return "\n".join(row[0] for row in db.connection().exec_driver_sql(f"EXPLAIN {statement}", parameters))


@pytest.mark.postgres_only
@pytest.mark.parametrize("filters", [
    {},
    {"zone_id": uuid.uuid4(), "receiver_id": uuid.uuid4(), "sender_id": uuid.uuid4(), "urgency": "urgent"},
], ids=["unfiltered", "every-filter"])
def test_response_times_read_only_their_covering_index(app, database_url, filters):
    assert database_url.startswith("postgresql")
    with app.app_context():
        db = get_session()
        with first_statement(db) as seen:
            queries.response_times(db, queries.Filters(date(2024, 1, 1), date(2024, 3, 31), "week", **filters))
        statement, parameters = next((s, p) for s, p in seen if "percentile_cont" in s)
        explained = index_only_plan(db, statement, parameters)
        db.rollback()
    assert "Index Only Scan using ix_referrals_response_times on referrals" in explained, explained
    assert "Seq Scan" not in explained and "Heap" not in explained, explained


@pytest.mark.postgres_only
def test_float_durations_equal_the_numeric_epoch_difference(app, database_url):
    """The same float8 as (extract(epoch) - extract(epoch))::float8 / 3600, bit for bit, for times with
    microseconds from 1834 to 2105 apart by up to 30 years: so the percentiles did not move."""
    assert database_url.startswith("postgresql")
    hours = queries.hours_between(column("later"), column("sent"), "postgresql")
    fast = str(hours.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    assert "extract" not in fast.lower() and "numeric" not in fast.lower(), fast
    with app.app_context():
        db = get_session()
        db.execute(text("SELECT setseed(0.6)"))
        differing, checked = db.execute(text(
            f"SELECT count(*) FILTER (WHERE {fast} IS DISTINCT FROM exact), count(*) FROM ("
            "  SELECT sent, later, (extract(epoch FROM later) - extract(epoch FROM sent))::float8 / 3600 AS exact"
            "  FROM (SELECT sent, sent + (random() * 9.5e14)::bigint * interval '1 microsecond' AS later"
            "        FROM (SELECT timestamptz '1834-01-01 00:00:00+00'"
            "                     + (random() * 7.6e15)::bigint * interval '1 microsecond' AS sent"
            "              FROM generate_series(1, 200000)) s"
            "        UNION ALL SELECT timestamptz '2026-03-29 00:59:59.999999+00', timestamptz '2026-03-29 01:00:00+00'"
            "        UNION ALL SELECT timestamptz '2026-11-29 21:52:40.166645+00', timestamptz '2026-11-29 21:52:40.166645+00'"
            "        UNION ALL SELECT timestamptz '2105-12-31 23:59:59.999999+00',"
            "                         timestamptz '1834-01-01 00:00:00.000001+00') p) d")).one()
        db.rollback()
    assert checked == 200003 and differing == 0
