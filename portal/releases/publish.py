"""Publishing releases: one numbered, immutable release per closed month, after the lag.

A release for month M adds that month's row to the monthly table and, when M closes a quarter,
the quarter's rows to the quarterly tables. Nothing published is ever recomputed. Before a
release is stored, every number in it and in all earlier releases is audited together (the LP
audit in portal.disclosure): a suppressed cell must stay at least k−1 wide and never be pinned
inside 1..k−1. When the audit finds a way in, more cells of the new release are suppressed.
"""
from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.disclosure import TOTAL, Statistic, audit, protect_table
from portal.models import Release
from portal.releases import queries
from portal.releases.catalog import Catalog

COUNT_COLUMN = "referrals"


# -- periods ---------------------------------------------------------------------------------
def month_start(month: str) -> date:
    year, mon = map(int, month.split("-"))
    return date(year, mon, 1)


def month_end(month: str) -> date:
    """The first day after the month."""
    start = month_start(month)
    return start + timedelta(days=calendar.monthrange(start.year, start.month)[1])


def next_month(month: str) -> str:
    return month_end(month).strftime("%Y-%m")


def quarter_of(month: str) -> str:
    start = month_start(month)
    return f"{start.year}-Q{(start.month - 1) // 3 + 1}"


def quarter_months(quarter: str) -> list[str]:
    year, q = quarter.split("-Q")
    first = (int(q) - 1) * 3 + 1
    return [f"{year}-{m:02d}" for m in range(first, first + 3)]


def closes_quarter(month: str) -> bool:
    return month_start(month).month % 3 == 0


def due_months(db: Session, catalog: Catalog, today: date) -> list[str]:
    """Months closed at least `lag_days` ago and not yet released, oldest first."""
    first = queries.first_referral_day(db)
    if first is None:
        return []
    last = db.scalar(select(func.max(Release.period)))
    month = next_month(last) if last else first.strftime("%Y-%m")
    due = []
    while month_end(month) + timedelta(days=catalog.lag_days) <= today:
        due.append(month)
        month = next_month(month)
    return due


# -- building one release --------------------------------------------------------------------
def _atom(month: str, zone: str, klass: str) -> str:
    return f"{month}|{zone}|{klass}"


class _Builder:
    """Collects the new release's tables as statistics over (month, zone, outcome class) atoms."""

    def __init__(self, db: Session, catalog: Catalog, month: str, zones: list[str]):
        self.catalog, self.month, self.zones = catalog, month, zones
        months = quarter_months(quarter_of(month)) if closes_quarter(month) else [month]
        self.counts = queries.atom_counts(db, month_start(months[0]), month_end(months[-1]))
        self.db = db
        self.tables: dict[str, dict] = {}
        self.new: list[Statistic] = []  # statistics of this release, in table order

    def atoms(self, months, zones=None, klasses=None) -> frozenset[str]:
        return frozenset(_atom(m, z, o) for m in months for z in (zones or self.zones)
                         for o in (klasses or queries.OUTCOME_CLASSES))

    def true(self, atoms) -> int:
        return sum(self.counts.get(tuple(a.split("|")), 0) for a in atoms)

    def add_counts(self, name: str, period: str, months: list[str], dimension: str | None):
        """A table's new column: one row per category (or one citywide row), plus its total."""
        if dimension == "zone":
            rows = {z: self.atoms(months, zones=[z]) for z in self.zones}
        elif dimension == "outcome":
            rows = {o: self.atoms(months, klasses=[o]) for o in queries.OUTCOME_CLASSES}
        else:
            rows = {COUNT_COLUMN: self.atoms(months)}
        cells = {(row, period): self.true(atoms) for row, atoms in rows.items()}
        published = protect_table(cells, self.catalog.k)
        values = {row: published[(row, period)] for row in rows}
        stats = [Statistic(f"{name}|{period}|{row}", atoms, values[row], cells[(row, period)])
                 for row, atoms in rows.items()]
        if dimension is not None:
            total_atoms = self.atoms(months)
            values[TOTAL] = published[(TOTAL, period)]
            stats.append(Statistic(f"{name}|{period}|{TOTAL}", total_atoms, values[TOTAL], self.true(total_atoms)))
        self.tables[name] = {"period": period, "values": values}
        self.new.extend(stats)

    def add_median(self, name: str, quarter: str):
        months = quarter_months(quarter)
        n, median = queries.days_to_first_contact(self.db, month_start(months[0]), month_end(months[-1]))
        # A median of fewer than k people says too much about each of them: suppressed with them.
        value = round(median, 1) if median is not None and n >= self.catalog.k else None
        self.tables[name] = {"period": quarter, "values": {"median_days": value}, "n_suppressed": n < self.catalog.k}


def _connected(statistics: list[Statistic], seeds: frozenset[str]) -> list[Statistic]:
    """The statistics linked to `seeds` through shared cells. Numbers in no such chain bound
    nothing here, so auditing only these is the same as auditing everything, and much faster."""
    reach, changed = set(seeds), True
    while changed:
        changed = False
        for statistic in statistics:
            if statistic.atoms & reach and not statistic.atoms <= reach:
                reach |= statistic.atoms
                changed = True
    return [s for s in statistics if s.atoms & reach]


def _secure(builder: _Builder, earlier: list[Statistic], k: int) -> None:
    """Suppress more new cells until the audit over everything published finds no way in."""
    earlier = _connected(earlier, frozenset().union(*(s.atoms for s in builder.new)))
    while True:
        violations = audit(earlier + builder.new, k)
        if not violations:
            return
        violating = {v.key for v in violations}
        # A violation names the cells that expose it (a statistic, a lone cell, or a remainder).
        atoms_at_risk = frozenset().union(*(v.atoms for v in violations))
        candidates = [s for s in builder.new if s.value is not None and s.value > 0 and s.atoms & atoms_at_risk]
        if not candidates:  # nothing of ours touches it: an earlier release is at risk on its own
            raise RuntimeError(f"release audit failed on earlier numbers: {sorted(violating)[:3]}")
        smallest = min(candidates, key=lambda s: (s.value, s.key.endswith(TOTAL), s.key))
        builder.new[builder.new.index(smallest)] = Statistic(smallest.key, smallest.atoms, None, smallest.true_value)
        name, period, row = smallest.key.split("|")
        builder.tables[name]["values"][row] = None


def _earlier_statistics(releases: list[Release]) -> list[Statistic]:
    return [Statistic(s["key"], frozenset(s["atoms"]), s["value"], 0) for r in releases for s in r.statistics]


def build_release(db: Session, catalog: Catalog, month: str, now: datetime) -> Release:
    earlier = list(db.scalars(select(Release).order_by(Release.number)))
    builder = _Builder(db, catalog, month, queries.zone_codes(db))
    for name, spec in catalog.tables.items():
        if spec.period == "month":
            builder.add_counts(name, month, [month], spec.by)
        elif closes_quarter(month):
            quarter = quarter_of(month)
            if spec.statistic == "median_days_to_first_contact":
                builder.add_median(name, quarter)
            else:
                builder.add_counts(name, quarter, quarter_months(quarter), spec.by)
    _secure(builder, _earlier_statistics(earlier), catalog.k)
    number = (earlier[-1].number + 1) if earlier else 1
    return Release(number=number, period=month, released_through=month_end(month) - timedelta(days=1),
                   published_at=now, k=catalog.k, lag_days=catalog.lag_days, policy_version=catalog.version,
                   tables=builder.tables,
                   statistics=[{"key": s.key, "atoms": sorted(s.atoms), "value": s.value} for s in builder.new])


def publish_due(db: Session, catalog: Catalog, now: datetime, progress=lambda n: None) -> list[Release]:
    """Publish every month that is due, oldest first; each release is committed on its own."""
    published = []
    for month in due_months(db, catalog, now.date()):
        release = build_release(db, catalog, month, now)
        db.add(release)
        db.commit()
        published.append(release)
        progress(1)
    return published
