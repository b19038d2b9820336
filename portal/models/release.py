"""Published aggregate releases: numbered, immutable, never recomputed in place.

A release holds exactly what was published (suppressed cells as null) and, for later audits,
which underlying cells each published number sums. True values of suppressed cells are never
stored: a later audit needs only what the public can see. A correction is a new release that
restates a month (portal/releases/publish.py `build_correction`); the one it corrects stays as it was.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, utcnow


class Release(Base):
    __tablename__ = "releases"

    __table_args__ = (UniqueConstraint("period", "revision", name="uq_releases_period_revision"),
                      CheckConstraint("(revision = 0) = (corrects IS NULL)", name="correction_names_its_release"))

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    period: Mapped[str] = mapped_column(String(7))  # the closed month it adds (or restates), YYYY-MM
    # 0 for the month's first release; 1, 2, … for corrections, each a new release of its own.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    corrects: Mapped[int | None] = mapped_column(ForeignKey("releases.number", ondelete="RESTRICT"))
    reason: Mapped[str | None] = mapped_column(String(200))  # the operator's words, shown in the ledger
    released_through: Mapped[date] = mapped_column(Date)  # last day of the data it covers
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    k: Mapped[int] = mapped_column(Integer)
    lag_days: Mapped[int] = mapped_column(Integer)
    policy_version: Mapped[str] = mapped_column(String(64))
    tables: Mapped[dict] = mapped_column(JSON)  # table name → {"columns": [...], "rows": [[...], ...]}
    statistics: Mapped[list] = mapped_column(JSON)  # [{"key", "atoms", "value"}] for later audits
