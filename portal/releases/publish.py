"""Publishing releases: one numbered, immutable release per closed month, after the lag.

A correction (`build_correction`) is a new release that restates an earlier month.

A release for month M adds that month's row to the monthly table and, when M closes a quarter,
the quarter's rows to the quarterly tables. Nothing published is ever recomputed. Before a
release is stored, every number in it and in all earlier releases is audited together (the LP
audit in portal.disclosure): a suppressed cell must stay at least k−1 wide and never be pinned
inside 1..k−1. When the audit finds a way in, more cells of the new release are suppressed.
"""
from __future__ import annotations

import calendar
import math
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.disclosure import TOTAL, Statistic, audit, protect_table
from portal.disclosure.audit import TOLERANCE, _Problem
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

    def __init__(self, db: Session, catalog: Catalog, month: str, zones: list[str], with_quarter: bool,
                 tag: str = ""):
        self.catalog, self.month, self.zones, self.tag = catalog, month, zones, tag
        self.restated: set[str] = set()  # for a correction: the cells it restates
        months = quarter_months(quarter_of(month)) if with_quarter else [month]
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
        stats = [Statistic(f"{name}|{period}|{row}{self.tag}", self._tagged(atoms), values[row], cells[(row, period)])
                 for row, atoms in rows.items()]
        if dimension is not None:
            total_atoms = self.atoms(months)
            values[TOTAL] = published[(TOTAL, period)]
            stats.append(Statistic(f"{name}|{period}|{TOTAL}{self.tag}", self._tagged(total_atoms), values[TOTAL],
                                   self.true(total_atoms)))
        self.tables[name] = {"period": period, "values": values}
        self.new.extend(stats)

    def _tagged(self, atoms: frozenset[str]) -> frozenset[str]:
        """A correction's cells are the data as it is now: unknowns of their own in the audit."""
        return frozenset(a + self.tag for a in atoms) if self.tag else atoms

    def cell_key(self, statistic: Statistic) -> str:
        """name|period|row, without a correction's tag."""
        return statistic.key[:len(statistic.key) - len(self.tag)] if self.tag else statistic.key

    def suppress(self, statistic: Statistic) -> None:
        self.new[self.new.index(statistic)] = Statistic(statistic.key, statistic.atoms, None, statistic.true_value)
        name, period, row = self.cell_key(statistic).split("|")
        self.tables[name]["values"][row] = None

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


def _secure(builder: _Builder, earlier: list[Statistic], k: int, previous: dict | None = None) -> None:
    """Suppress more new cells until the audit over everything published finds no way in (and, for
    a correction, until no change from the numbers it restates is small enough to single anyone out)."""
    earlier = _connected(earlier, frozenset().union(*(s.atoms for s in builder.new)))
    while True:
        if previous is not None and _suppress_small_changes(builder, previous, k):
            continue
        # A correction is held to what `portal releases audit` sees later (no true values stored):
        # every suppressed number of it keeps the width rule, even one of k or more.
        new = builder.new if previous is None else [Statistic(s.key, s.atoms, s.value, 0) for s in builder.new]
        violations = audit(earlier + new, k)
        if not violations:
            return
        violating = {v.key for v in violations}
        # A violation names the cells that expose it (a statistic, a lone cell, or a remainder).
        atoms_at_risk = frozenset().union(*(v.atoms for v in violations))
        candidates = [s for s in builder.new if s.value is not None and s.value > 0 and s.atoms & atoms_at_risk]
        if not candidates:  # nothing of ours touches it: an earlier release is at risk on its own
            raise RuntimeError(f"release audit failed on earlier numbers: {sorted(violating)[:3]}")
        builder.suppress(min(candidates, key=lambda s: (s.value, builder.cell_key(s).endswith(TOTAL), s.key)))


def _known(statistics: list[Statistic], k: int) -> dict[str, int]:
    """Every value an attacker knows exactly from `statistics`: the published ones, and each
    suppressed one that the published relations pin to a single number."""
    known = {s.key: s.value for s in statistics if s.value is not None}
    suppressed = [s for s in statistics if s.value is None]
    if suppressed and known:
        problem = _Problem(statistics)
        for s in suppressed:
            if s.atoms <= problem.constrained:
                low, high = problem.low(s.atoms), problem.high(s.atoms)
                if math.ceil(low - TOLERANCE) == math.floor(high + TOLERANCE):
                    known[s.key] = math.floor(high + TOLERANCE)
    return known


def _suppress_small_changes(builder: _Builder, before: dict[str, int], k: int) -> bool:
    """The rules that keep a correction from being differenced against what it restates.

    `before` holds what an attacker knew exactly of each restated cell and total (published or
    pinned). For each cell and total of the correction, and for what its suppressed cells add up
    to, the value an attacker can know now must be unknown, or equal to the value known before,
    or differ from it by at least k. A value suppressed before and unknown stays unknown. The
    smallest published number of the correction that reveals a small change is suppressed; the
    caller repeats until nothing is left. Returns whether anything was suppressed.
    """
    now = _known(builder.new, k)
    for statistic in builder.new:
        key = builder.cell_key(statistic)
        if statistic.key not in now:
            continue
        old = before.get(key, 0 if key not in builder.restated else None)
        if old is None or 0 < abs(now[statistic.key] - old) < k:
            return _reveal_less(builder, statistic)
    for name, content in builder.tables.items():
        total = next((s for s in builder.new if builder.cell_key(s) == f"{name}|{content['period']}|{TOTAL}"), None)
        if total is None or total.key not in now or builder.cell_key(total) not in before:
            continue
        prefix = f"{name}|{content['period']}|"
        inside = [s for s in builder.new if s is not total and builder.cell_key(s).startswith(prefix)]
        # The total minus the cells shown, and minus every cell known: both are sums anyone can take.
        for cells in ([s for s in inside if s.value is not None], [s for s in inside if s.key in now]):
            if any(builder.cell_key(s) not in before for s in cells):
                continue  # a cell unknown before: its own rule above already applies
            hidden_now = now[total.key] - sum(now[s.key] for s in cells)
            hidden_before = before[builder.cell_key(total)] - sum(before[builder.cell_key(s)] for s in cells)
            if 0 < abs(hidden_now - hidden_before) < k:
                return _reveal_less(builder, total)
    return False


def _reveal_less(builder: _Builder, statistic: Statistic) -> bool:
    """Make `statistic` unknown: suppress it, or, when the relations pin it anyway, the smallest
    published number that shares its cells."""
    if statistic.value is not None:
        builder.suppress(statistic)
        return True
    sharing = [s for s in builder.new if s.value is not None and s.value > 0 and s.atoms & statistic.atoms]
    if not sharing:
        raise RuntimeError(f"cannot hide {statistic.key}: nothing published shares its cells")
    builder.suppress(min(sharing, key=lambda s: (s.value, s.key)))
    return True


def _earlier_statistics(releases: list[Release]) -> list[Statistic]:
    return [Statistic(s["key"], frozenset(s["atoms"]), s["value"], 0) for r in releases for s in r.statistics]


def _fill(builder: _Builder, catalog: Catalog, month: str, with_quarter: bool) -> None:
    for name, spec in catalog.tables.items():
        if spec.period == "month":
            builder.add_counts(name, month, [month], spec.by)
        elif with_quarter:
            quarter = quarter_of(month)
            if spec.statistic == "median_days_to_first_contact":
                builder.add_median(name, quarter)
            else:
                builder.add_counts(name, quarter, quarter_months(quarter), spec.by)


def _release(builder: _Builder, catalog: Catalog, number: int, month: str, now: datetime, **correction) -> Release:
    return Release(number=number, period=month, released_through=month_end(month) - timedelta(days=1),
                   published_at=now, k=catalog.k, lag_days=catalog.lag_days, policy_version=catalog.version,
                   tables=builder.tables, **correction,
                   statistics=[{"key": s.key, "atoms": sorted(s.atoms), "value": s.value} for s in builder.new])


def build_release(db: Session, catalog: Catalog, month: str, now: datetime) -> Release:
    earlier = list(db.scalars(select(Release).order_by(Release.number)))
    builder = _Builder(db, catalog, month, queries.zone_codes(db), closes_quarter(month))
    _fill(builder, catalog, month, closes_quarter(month))
    _secure(builder, _earlier_statistics(earlier), catalog.k)
    return _release(builder, catalog, (earlier[-1].number + 1) if earlier else 1, month, now)


class CorrectionError(Exception):
    pass


def _untagged(key: str) -> str:
    """A statistic's cell key without the tag of the correction that published it."""
    return key.split("#", 1)[0]


def build_correction(db: Session, catalog: Catalog, month: str, reason: str, now: datetime) -> Release:
    """A new release that restates `month` (and its quarter, if that was released) from today's data.

    The release it corrects is never touched. Its cells are new unknowns for the audit (the data
    changed), audited with every earlier release, and `_suppress_small_changes` keeps anyone from
    learning a small change by subtracting the old numbers from the new.
    """
    earlier = list(db.scalars(select(Release).order_by(Release.number)))
    same_month = [r for r in earlier if r.period == month]
    if not same_month:
        raise CorrectionError(f"{month} has not been released; there is nothing to correct")
    if not reason or not reason.strip() or len(reason) > 200:
        raise CorrectionError("say why, in at most 200 characters (the ledger shows it)")
    quarter = quarter_of(month)
    with_quarter = any(content["period"] == quarter for r in earlier for content in r.tables.values())
    number = earlier[-1].number + 1
    builder = _Builder(db, catalog, month, queries.zone_codes(db), with_quarter, tag=f"#r{number}")
    _fill(builder, catalog, month, with_quarter)
    builder.restated = {f"{name}|{content['period']}|{row}" for r in earlier for name, content in r.tables.items()
                        if name in builder.tables and content["period"] == builder.tables[name]["period"]
                        for row in content["values"]}
    before = {}
    for release in earlier:  # later releases overwrite earlier ones: what stands today
        statistics = [Statistic(_untagged(s["key"]), frozenset(s["atoms"]), s["value"], 0) for s in release.statistics]
        relevant = [s for s in statistics if s.key in builder.restated]
        if relevant:
            known = _known(_connected(_earlier_statistics(earlier[:earlier.index(release) + 1]),
                                      frozenset().union(*(s.atoms for s in relevant))), catalog.k)
            for s in relevant:
                before.pop(s.key, None)
                for key, value in known.items():
                    if _untagged(key) == s.key:
                        before[s.key] = value
    _secure(builder, _earlier_statistics(earlier), catalog.k, before)
    return _release(builder, catalog, number, month, now, revision=max(r.revision for r in same_month) + 1,
                    corrects=same_month[-1].number, reason=reason.strip())


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
