"""Counts for releases, computed in the database: GROUP BY month, zone and outcome class.

Never loads a referral row, never touches a personal field. The finest cell a release can
speak about is (month a referral was sent, zone, outcome class); every released number is a
sum of such cells, which is what lets the audit relate all tables and releases to each other.
"""
from __future__ import annotations

import statistics
from datetime import date, datetime, time, timezone

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.orm import Session

from portal.models import Referral, Zone
from portal.referrals import codes

OUTCOME_CLASSES = tuple(codes.COMPLETION_OUTCOMES) + ("declined", "cancelled", "revoked", "open")


def _month_of(column, dialect: str):
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def outcome_class():
    return case((Referral.status == "completed", Referral.outcome),
                (Referral.status.in_(codes.OPEN_STATUSES), literal_column("'open'")),
                else_=Referral.status)


def atom_counts(db: Session, first_day: date, end_day: date) -> dict[tuple[str, str, str], int]:
    """(month, zone code, outcome class) → referrals sent in [first_day, end_day)."""
    month = _month_of(Referral.created_at, db.get_bind().dialect.name).label("month")
    klass = outcome_class().label("klass")
    query = (select(month, Zone.code, klass, func.count())
             .join(Zone, Zone.id == Referral.zone_id)
             .where(Referral.created_at >= _start(first_day), Referral.created_at < _start(end_day))
             .group_by(month, Zone.code, klass))
    return {(m, z, o): n for m, z, o, n in db.execute(query)}


def zone_codes(db: Session) -> list[str]:
    return list(db.scalars(select(Zone.code).order_by(Zone.code)))


def first_referral_day(db: Session) -> date | None:
    first = db.scalar(select(func.min(Referral.created_at)))
    if first is None:
        return None
    if first.tzinfo is None:
        first = first.replace(tzinfo=timezone.utc)
    return first.astimezone(timezone.utc).date()


def days_to_first_contact(db: Session, first_day: date, end_day: date) -> tuple[int, float | None]:
    """(how many referrals sent in the range were reached, the median days it took)."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        days = func.extract("epoch", Referral.first_contact_at - Referral.created_at) / 86400.0
        query = select(func.count(), func.percentile_cont(0.5).within_group(days))
        where = (Referral.first_contact_at.is_not(None), Referral.created_at >= _start(first_day),
                 Referral.created_at < _start(end_day))
        n, median = db.execute(query.where(*where)).one()
        return n, float(median) if median is not None else None
    days = func.julianday(Referral.first_contact_at) - func.julianday(Referral.created_at)
    values = list(db.scalars(select(days).where(Referral.first_contact_at.is_not(None),
                                                Referral.created_at >= _start(first_day),
                                                Referral.created_at < _start(end_day))))
    return len(values), (statistics.median(values) if values else None)
