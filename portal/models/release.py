"""Published aggregate releases: numbered, immutable, never recomputed in place.

A release holds exactly what was published (suppressed cells as null) and, for later audits,
which underlying cells each published number sums. True values of suppressed cells are never
stored: a later audit needs only what the public can see.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, utcnow


class Release(Base):
    __tablename__ = "releases"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    period: Mapped[str] = mapped_column(String(7), unique=True)  # the closed month it adds, YYYY-MM
    released_through: Mapped[date] = mapped_column(Date)  # last day of the data it covers
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    k: Mapped[int] = mapped_column(Integer)
    lag_days: Mapped[int] = mapped_column(Integer)
    policy_version: Mapped[str] = mapped_column(String(64))
    tables: Mapped[dict] = mapped_column(JSON)  # table name → {"columns": [...], "rows": [[...], ...]}
    statistics: Mapped[list] = mapped_column(JSON)  # [{"key", "atoms", "value"}] for later audits
