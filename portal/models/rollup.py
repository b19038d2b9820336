"""Daily rollups of the city dashboard's counts, and the days whose rollups are out of date.

A rollup row counts the referrals *sent* on one UTC day that share every coarse key the
dashboard groups or filters by; the dashboard sums them into weeks and months. Nothing here names
a referral: the finest row is (day, sender, receiver, zone, urgency, status, outcome). The keys are
many (a day of a 1,000-referral-a-day city has some 550 count rows), so the monthly tables sum the
days again: a three-year history monthly reads about 80,000 rows instead of 600,000.

Database triggers (migration c0a0d17e0008, both dialects) mark a day dirty whenever a referral
sent that day is inserted, deleted, or changes a column the rollups read, and whenever one of its
needed services is added or removed. `portal/dashboards/rollups.py` re-aggregates the dirty days
before the dashboard reads; it explains why a count is never lost nor doubled.
"""
from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import BigInteger, Date, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base

NO_OUTCOME = ""  # outcome is part of the key, and a key column cannot be NULL


class DailyCount(Base):
    """Referrals sent on `day` with these keys; `accepted` of them have an acceptance time."""

    __tablename__ = "dashboard_daily_counts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sender_org_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    receiver_org_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    zone_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    urgency: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(40), primary_key=True)  # NO_OUTCOME for none
    referrals: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)


class DailyService(Base):
    """Referrals sent on `day` with these keys that name `service` among their needs."""

    __tablename__ = "dashboard_daily_services"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sender_org_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    receiver_org_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    zone_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    urgency: Mapped[str] = mapped_column(String(16), primary_key=True)
    service: Mapped[str] = mapped_column(String(40), primary_key=True)
    referrals: Mapped[int] = mapped_column(Integer)


class MonthlyCount(Base):
    """DailyCount summed over a calendar month (`month` is its first day): the whole history in few rows."""

    __tablename__ = "dashboard_monthly_counts"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    sender_org_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    receiver_org_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    zone_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    urgency: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(40), primary_key=True)
    referrals: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)


class MonthlyService(Base):
    """DailyService summed over a calendar month."""

    __tablename__ = "dashboard_monthly_services"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    sender_org_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    receiver_org_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    zone_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    urgency: Mapped[str] = mapped_column(String(16), primary_key=True)
    service: Mapped[str] = mapped_column(String(40), primary_key=True)
    referrals: Mapped[int] = mapped_column(Integer)


class DirtyDay(Base):
    """A day whose rollups may be out of date, marked by one writing transaction.

    `writer` is the marking transaction's id on PostgreSQL (0 on SQLite, whose writers take
    turns): each writer marks with a row of its own, so a mark is never shared by a transaction
    that is still running (rollups.py says why that matters)."""

    __tablename__ = "dashboard_dirty_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    writer: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
