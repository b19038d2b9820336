"""The dashboard's daily rollups: refreshed from the dirty days before each read, or rebuilt whole.

Triggers on `referrals` and `referral_services` (migration c0a0d17e0008) mark the UTC day a
referral was sent on dirty, in the writer's own transaction, whenever something the rollups count
changes. `refresh` claims the marks, deletes those days' rollup rows and aggregates the days again
from `referrals` with one INSERT … SELECT … GROUP BY per rollup table, taking the days' old daily
rows out of their months before and adding the new ones after. `rebuild` recomputes every day and
sums every month (after a bulk load that skipped the triggers, or to repair). Neither loads a referral into Python: the only rows fetched
are the claimed days.

Why a count is never lost nor doubled, on PostgreSQL under READ COMMITTED (every statement sees
what was committed when it started):

- A mark is a row (day, writer) of the writing transaction's own (writer = txid_current()), so
  no writer ever relies on a mark that another transaction inserted and a refresh may have
  claimed. (With one row per day and ON CONFLICT DO NOTHING, a writer still running could find
  the day already marked, a refresh could claim that mark and aggregate without the writer's
  change, and the change would be lost once it committed.) Writers never wait for a refresh.
- Refreshes take turns: each holds a transaction-level advisory lock from before its claim
  until it commits. Two refreshes never rewrite the same day at once (which could double it);
  the second claims, after the first committed, only the marks the first did not.
- The claim (DELETE … RETURNING) takes only marks committed before it started; the aggregation
  starts after it, so it sees every change whose mark was claimed. A mark committed later is not
  claimed and stays for the next refresh. Whatever a writer commits during a refresh therefore
  leaves its day dirty or is already counted.
- Replacing a day (delete its rows, insert its aggregate) is idempotent: aggregating a day that
  was not dirty, or twice, gives the same rows. A month changes only by the difference of
  its days' daily rows, which only refreshes write, in the same turn: it always equals its days.

SQLite takes its write lock for the whole transaction (BEGIN IMMEDIATE, portal/db.py), so a
refresh there runs while no writer does; the writer column is 0.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import TIMESTAMP, Date, cast, delete, exists, func, insert, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from portal.models import DailyCount, DailyService, DirtyDay, MonthlyCount, MonthlyService, Referral, referral_services
from portal.models.rollup import NO_OUTCOME

REFERRALS = Referral.__table__  # columns only
LOCK = 7_201_844_016  # pg_advisory_xact_lock key: "dashboard rollups" (migrations use ...015)
MAX_RANGES = 64  # more scattered days than this are aggregated as one span (extra days are harmless)


def sent_day(column, dialect: str):
    """The UTC day of a stored timestamp, as a date."""
    if dialect == "postgresql":
        return cast(func.timezone(literal_column("'UTC'"), column), Date)
    if dialect == "sqlite":  # stored as naive UTC text
        return func.date(column)
    raise NotImplementedError(f"no day bucketing for {dialect}")


def month_of(column, dialect: str):
    """The first day of a stored day's month, as a date."""
    if dialect == "postgresql":
        return cast(func.date_trunc(literal_column("'month'"), cast(column, TIMESTAMP)), Date)
    if dialect == "sqlite":
        return func.strftime(literal_column("'%Y-%m-01'"), column)
    raise NotImplementedError(f"no month bucketing for {dialect}")


def refresh(db: Session) -> int:
    """Bring the dirty days' rollups up to date in the caller's transaction; how many days."""
    if not db.execute(select(exists().select_from(DirtyDay.__table__))).scalar():
        return 0
    _take_turn(db)
    days = sorted(set(db.scalars(delete(DirtyDay).returning(DirtyDay.day))))
    if days:
        ranges = _ranges(days)
        _add_to_months(db, ranges, -1)  # take the days' old rows out of their months,
        _aggregate(db, ranges)
        _add_to_months(db, ranges, +1)  # and put the new ones in
    return len(days)


def rebuild(db: Session) -> None:
    """Every day from scratch, in the caller's transaction (the caller commits)."""
    _take_turn(db)
    db.execute(delete(DirtyDay))
    _aggregate(db, None)
    _sum_months(db, None)


def _take_turn(db: Session) -> None:
    if db.get_bind().dialect.name == "postgresql":
        db.execute(select(func.pg_advisory_xact_lock(LOCK)))


def _ranges(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as inclusive runs of consecutive days; one span if they are too scattered."""
    runs = []
    for day in days:
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1][1] = day
        else:
            runs.append([day, day])
    if len(runs) > MAX_RANGES:
        return [(days[0], days[-1])]
    return [(first, last) for first, last in runs]


def _months(ranges: list[tuple[date, date]]) -> list[date]:
    """The first days of every month a range touches (each day aggregated again, not only the claimed)."""
    months = set()
    for first, last in ranges:
        month = first.replace(day=1)
        while month <= last:
            months.add(month)
            month = _month_end(month) + timedelta(days=1)
    return sorted(months)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), timezone.utc)


def _aggregate(db: Session, ranges: list[tuple[date, date]] | None) -> None:
    """Replace the rollup rows of the days in `ranges` (None: all days) with fresh aggregates."""
    dialect = db.get_bind().dialect.name
    r = REFERRALS.c

    def within(column, moment):  # the rows of the days in `ranges`, by a column holding a day or a time
        if ranges is None:
            return []
        return [or_(*(moment(column, first, last) for first, last in ranges))]

    sent = within(r.created_at, lambda c, first, last: (c >= _midnight(first))
                  & (c < _midnight(last + timedelta(days=1))))
    day = sent_day(r.created_at, dialect)
    keys = (day, r.sender_org_id, r.receiver_org_id, r.zone_id, r.urgency)
    outcome = func.coalesce(r.outcome, literal_column(f"'{NO_OUTCOME}'"))

    counts, services = DailyCount.__table__, DailyService.__table__
    for table in (counts, services):
        db.execute(delete(table).where(*within(table.c.day, lambda c, first, last: c.between(first, last))))
    db.execute(insert(counts).from_select(
        ["day", "sender_org_id", "receiver_org_id", "zone_id", "urgency", "status", "outcome", "referrals", "accepted"],
        select(*keys, r.status, outcome, func.count(), func.count(r.accepted_at))
        .where(*sent).group_by(*keys, r.status, outcome)))
    service = referral_services.c.service
    db.execute(insert(services).from_select(
        ["day", "sender_org_id", "receiver_org_id", "zone_id", "urgency", "service", "referrals"],
        select(*keys, service, func.count())
        .select_from(REFERRALS.join(referral_services, referral_services.c.referral_id == r.id))
        .where(*sent).group_by(*keys, service)))


ROLLUPS = ((DailyCount.__table__, MonthlyCount.__table__, ("status", "outcome"), ("referrals", "accepted")),
           (DailyService.__table__, MonthlyService.__table__, ("service",), ("referrals",)))
KEYS = ("sender_org_id", "receiver_org_id", "zone_id", "urgency")


def _add_to_months(db: Session, ranges: list[tuple[date, date]], sign: int) -> None:
    """Add (+1) or subtract (-1) the daily rows of the days in `ranges` to or from their months;
    a monthly row that falls to no referral goes. Cheaper than summing a whole month again."""
    dialect = db.get_bind().dialect.name
    for daily, monthly, extra, counted in ROLLUPS:
        keys = [*KEYS, *extra]
        days = or_(*(daily.c.day.between(first, last) for first, last in ranges))
        month = month_of(daily.c.day, dialect).label("month")
        summed = select(month, *(daily.c[k] for k in keys), *(func.sum(daily.c[c]).label(c) for c in counted)) \
            .where(days).group_by(month, *(daily.c[k] for k in keys))
        if sign < 0:
            d = summed.subquery()
            db.execute(update(monthly).values({c: monthly.c[c] - d.c[c] for c in counted})
                       .where(monthly.c.month == d.c.month, *(monthly.c[k] == d.c[k] for k in keys)))
            continue
        upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(monthly) \
            .from_select(["month", *keys, *counted], summed)
        db.execute(upsert.on_conflict_do_update(index_elements=["month", *keys],
                                                set_={c: monthly.c[c] + upsert.excluded[c] for c in counted}))
        db.execute(delete(monthly).where(monthly.c.month.in_(_months(ranges)), monthly.c.referrals == 0))


def _sum_months(db: Session, months: list[date] | None) -> None:
    """Replace the monthly rows of `months` (first days; None: all) with the sums of their days,
    read from the daily rows this transaction just wrote (refreshes take turns, so no other writes them)."""
    dialect = db.get_bind().dialect.name
    for daily, monthly, columns in (
            (DailyCount.__table__, MonthlyCount.__table__, ("status", "outcome", "referrals", "accepted")),
            (DailyService.__table__, MonthlyService.__table__, ("service", "referrals"))):
        keys = [daily.c[name] for name in ("sender_org_id", "receiver_org_id", "zone_id", "urgency",
                                           *columns) if name not in ("referrals", "accepted")]
        sums = [func.sum(daily.c[name]) for name in columns if name in ("referrals", "accepted")]
        month = month_of(daily.c.day, dialect)
        if months is None:
            db.execute(delete(monthly))
            within = []
        else:
            db.execute(delete(monthly).where(monthly.c.month.in_(months)))
            within = [or_(*(daily.c.day.between(first, _month_end(first)) for first in months))]
        db.execute(insert(monthly).from_select(
            ["month", *(c.name for c in keys), *(name for name in columns if name in ("referrals", "accepted"))],
            select(month, *keys, *sums).where(*within).group_by(month, *keys)))


def _month_end(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
