"""The city dashboard's numbers, computed in the database, and the tables they make.

Every statement selects only aggregates (counts, sums, percentiles) and the coarse columns they
are grouped by: the period a referral was sent in, sending organization, receiving team, zone,
status, urgency, needed service, outcome. The rows fetched are the groups; no referral row, id
or personal field ever reaches Python. All of them go through `_rows`, the one place a
dashboard statement runs.

The counts (every crosstab, acceptance, outcomes) sum the daily rollups (portal/models/rollup.py),
which `build_table` and `build_tables` first bring up to date (rollups.refresh, in the caller's
transaction). Every filter is a rollup key or whole UTC days, so the sums are exactly the counts
over the referrals. Response times need each referral's durations: they are computed live from
`referrals`, both durations for every team and for all teams in one statement.

The population of every table is one cohort: referrals *sent* from `start` to `end` (whole UTC
days, inclusive) that match the dimension filters. Periods are UTC weeks starting on Monday, or
calendar months, keyed by their first day ('YYYY-MM-DD').

Percentiles follow PostgreSQL's percentile_cont (linear interpolation between the two nearest
ranks). PostgreSQL computes them natively. SQLite has no percentile aggregate, so a window query
ranks the durations (row_number and count over the ordered durations, per group) and an outer
aggregate interpolates between the two ranks it needs: SQLite also answers with one row per
group, and both backends give the same numbers.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import TIMESTAMP, BigInteger, Date, Float, Integer, String, and_, case, cast, func, literal_column, or_, select, tuple_, union_all
from sqlalchemy.orm import Session

from portal.dashboards import rollups
from portal.db import plan_for_these_values
from portal.models import DailyCount, DailyService, MonthlyCount, MonthlyService, Organization, Referral, Zone
from portal.models.rollup import NO_OUTCOME
from portal.referrals import codes

PERIODS = {"week": "Week starting", "month": "Month"}
REFERRALS = Referral.__table__  # columns only: the dashboard never loads a Referral object
COUNTS, SERVICES = DailyCount.__table__, DailyService.__table__
MONTHLY = {COUNTS: MonthlyCount.__table__, SERVICES: MonthlyService.__table__}


@dataclass(frozen=True)
class Filters:
    start: date
    end: date
    period: str = "week"
    zone_id: uuid.UUID | None = None
    receiver_id: uuid.UUID | None = None
    sender_id: uuid.UUID | None = None
    urgency: str | None = None

    def where(self) -> list:
        """The cohort's conditions on `referrals`: sent within the range, and the dimension filters."""
        r = REFERRALS.c
        return [r.created_at >= datetime.combine(self.start, time(), timezone.utc),
                r.created_at < datetime.combine(self.end + timedelta(days=1), time(), timezone.utc), *self.keys(REFERRALS)]

    def keys(self, table) -> list:
        """The dimension filters, on any table that has these columns (referrals or a rollup)."""
        c = table.c
        return [column == value for column, value in ((c.zone_id, self.zone_id), (c.receiver_org_id, self.receiver_id),
                                                      (c.sender_org_id, self.sender_id), (c.urgency, self.urgency))
                if value is not None]

    def whole_months(self) -> tuple[date, date] | None:
        """(first, last): the first days of the first and last calendar months wholly inside the range."""
        first = self.start if self.start.day == 1 else _next_month(self.start)
        last = self.end.replace(day=1)
        if _next_month(self.end) != self.end + timedelta(days=1):  # the end's month is cut short
            last = (last - timedelta(days=1)).replace(day=1)
        return (first, last) if first <= last else None


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class Reference:
    """Labels for the coarse keys: zones (id → code, label) and exchange organizations (id → name, kind)."""

    zones: dict
    orgs: dict


def reference(db: Session) -> Reference:
    zones = {row.id: (row.code, row.label)
             for row in _rows(db, select(Zone.id, Zone.code, Zone.label).order_by(Zone.code))}
    orgs = {row.id: (row.name, row.kind)
            for row in _rows(db, select(Organization.id, Organization.name, Organization.kind)
                             .where(Organization.kind.in_(codes.EXCHANGE_KINDS)).order_by(Organization.name))}
    return Reference(zones, orgs)


# -- dialect-aware expressions ----------------------------------------------------------------
def _const(sql: str):
    """A constant rendered into the SQL, so GROUP BY repeats the very same expression."""
    return literal_column(sql)


def period_start(column, period: str, dialect: str):
    """The first day of the UTC week (Monday) or month of the column (a time, or a day), as 'YYYY-MM-DD'."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}")
    if dialect == "postgresql":
        day = cast(column, TIMESTAMP) if isinstance(column.type, Date) else \
            func.timezone(_const("'UTC'"), column)
        return func.to_char(func.date_trunc(_const(f"'{period}'"), day), _const("'YYYY-MM-DD'"))
    if dialect == "sqlite":  # stored as UTC text; 'weekday 0' moves to Sunday, then back to Monday
        if period == "month":
            return func.strftime(_const("'%Y-%m-01'"), column)
        return func.strftime(_const("'%Y-%m-%d'"), column, _const("'weekday 0'"), _const("'-6 days'"))
    raise NotImplementedError(f"no period bucketing for {dialect}")


def hours_between(later, earlier, dialect: str):
    if dialect == "postgresql":
        # The exact difference in whole microseconds, divided in float8: the very value of
        # (extract(epoch ...) - extract(epoch ...))::float8 / 3600, without extract's numeric per row
        # (numeric to float8 goes through text: it cost most of the statement's time at 1M referrals).
        return (_microseconds(later) - _microseconds(earlier)) / _float("1e6") / _float("3600")
    if dialect == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * _const("24.0")
    raise NotImplementedError(f"no durations for {dialect}")


def _microseconds(column):
    """Microseconds since 1970 as an exact whole float8 (PostgreSQL). date_part's epoch is the
    whole microseconds divided by 1e6, correctly rounded; multiplied back it lands within 0.49 of
    that integer for any time from 1834 to 2105 (|seconds| < 2**32), so round() recovers it."""
    return func.round(func.date_part(_const("'epoch'"), column, type_=Float) * _float("1e6"), type_=Float)


def _float(number: str):
    return literal_column(number, Float)


def first_day(day: date, period: str) -> date:
    return day - timedelta(days=day.weekday()) if period == "week" else day.replace(day=1)


def period_keys(start: date, end: date, period: str) -> list[str]:
    """Every period from the one holding `start` to the one holding `end`, empty ones included."""
    keys, day = [], first_day(start, period)
    while day <= end:
        keys.append(day.isoformat())
        day = day + timedelta(days=7) if period == "week" else \
            day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1)
    return keys


def period_label(key: str, period: str) -> str:
    return key if period == "week" else key[:7]


# -- aggregate queries ------------------------------------------------------------------------
def _rows(db: Session, statement) -> list:
    return db.execute(statement).all()


def _dialect(db: Session) -> str:
    return db.get_bind().dialect.name


DIMENSIONS = {"sender": "sender_org_id", "team": "receiver_org_id", "zone": "zone_id", "status": "status",
              "urgency": "urgency", "service": "service"}


def _rollup(f: Filters, daily, columns: tuple[str, ...], months: bool):
    """The rollup rows of the cohort as one subquery (day, *columns): the daily rows, or, with
    `months`, the monthly rows of the calendar months wholly in the range (their day is the 1st)
    and the daily rows of the days around them. Only a table that never buckets by week may take
    `months`, since a monthly row's day stands for the whole month."""
    whole = f.whole_months() if months else None
    if whole is None:
        return select(daily.c.day, *(daily.c[c] for c in columns)) \
            .where(daily.c.day >= f.start, daily.c.day <= f.end, *f.keys(daily)).subquery()
    monthly = MONTHLY[daily]
    first, last = whole
    after = _next_month(last)
    return union_all(
        select(monthly.c.month.label("day"), *(monthly.c[c] for c in columns))
        .where(monthly.c.month >= first, monthly.c.month <= last, *f.keys(monthly)),
        select(daily.c.day, *(daily.c[c] for c in columns))
        .where(daily.c.day >= f.start, daily.c.day <= f.end, or_(daily.c.day < first, daily.c.day >= after),
               *f.keys(daily))).subquery()


def _sum(column):
    return cast(func.sum(column), BigInteger)  # a sum of sums is numeric on PostgreSQL; counts are integers


def counts_by_period(db: Session, f: Filters, dimension: str) -> list:
    """(period key, dimension key, referrals) per non-empty group. A referral counts once per
    service it needs, so the service groups add up to more than the referrals sent."""
    name = DIMENSIONS[dimension]
    rows = _rollup(f, SERVICES if dimension == "service" else COUNTS, (name, "referrals"), f.period == "month")
    # Sum per day first, then bucket the few (day, key) groups: the period expression runs once a group.
    days = select(rows.c.day, rows.c[name], func.sum(rows.c.referrals).label("referrals")) \
        .group_by(rows.c.day, rows.c[name]).subquery()
    period = period_start(days.c.day, f.period, _dialect(db))
    return _rows(db, select(period, days.c[name], _sum(days.c.referrals)).group_by(period, days.c[name]))


def answer_counts(db: Session, f: Filters) -> list:
    """Per receiving team: (team, referrals, accepted, declined, still awaiting an answer)."""
    c = _rollup(f, COUNTS, ("receiver_org_id", "status", "referrals", "accepted"), True).c
    return _rows(db, select(c.receiver_org_id, _sum(c.referrals), _sum(c.accepted),
                            _sum(case((c.status == "declined", c.referrals), else_=0)),
                            _sum(case((c.status == "sent", c.referrals), else_=0)))
                 .group_by(c.receiver_org_id))


def outcome_counts(db: Session, f: Filters) -> list:
    c = _rollup(f, COUNTS, ("outcome", "referrals"), True).c
    return _rows(db, select(c.outcome, _sum(c.referrals)).where(c.outcome != NO_OUTCOME).group_by(c.outcome))


EMPTY = (0, None, None)


def response_times(db: Session, f: Filters) -> dict:
    """{team id (None for all teams): ((accepted, median, 90th percentile hours to accept),
    (reached, median, 90th percentile hours to first contact))}, from sending, over the referrals
    that got there; a team none of whose referrals got to either is left out.

    One statement, one pass over the cohort: PostgreSQL's percentile_cont per team and overall
    (GROUPING SETS) over the durations computed once a row, from the covering index
    ix_referrals_response_times (alone where the visibility map is current); on SQLite one materialized ranking of both durations,
    aggregated per team and overall."""
    dialect = _dialect(db)
    r = REFERRALS.c
    accept, contact = (hours_between(later, r.created_at, dialect) for later in (r.accepted_at, r.first_contact_at))
    where = [*f.where(), or_(r.accepted_at.is_not(None), r.first_contact_at.is_not(None))]
    if dialect == "postgresql":
        def cont(hours):
            return [func.count(hours), *(func.percentile_cont(_const(p)).within_group(hours) for p in ("0.5", "0.9"))]

        # OFFSET 0 keeps the subquery whole, so each duration is computed once a row, not once an aggregate.
        d = select(r.receiver_org_id.label("team"), accept.label("accept"), contact.label("contact")) \
            .where(*where).offset(0).subquery("durations")
        rows = _rows(db, select(d.c.team, func.grouping(d.c.team), *cont(d.c.accept), *cont(d.c.contact))
                     .group_by(func.grouping_sets(tuple_(d.c.team), tuple_())))
    else:
        # Ranks among the non-null durations only: a NULL falls into its own partition.
        def ranks(hours, name, partition):
            return [(func.row_number().over(partition_by=[*partition, hours.is_(None)], order_by=hours) - 1)
                    .label(f"{name}_ord"), func.count(hours).over(partition_by=partition or None).label(f"{name}_n")]

        ranked = select(r.receiver_org_id.label("team"), accept.label("accept"), contact.label("contact"),
                        *ranks(accept, "accept_team", [r.receiver_org_id]), *ranks(accept, "accept_all", []),
                        *ranks(contact, "contact_team", [r.receiver_org_id]), *ranks(contact, "contact_all", [])
                        ).where(*where).cte("ranked").prefix_with("MATERIALIZED")

        def cont(hours: str, scope: str):
            value, ordinal, n = ranked.c[hours], ranked.c[f"{hours}_{scope}_ord"], ranked.c[f"{hours}_{scope}_n"]
            result = [func.max(n)]
            for p in ("0.5", "0.9"):
                position = _const(p) * (n - 1)
                below = cast(position, Integer)  # floor, as the position is never negative
                fraction = position - below
                result.append(func.sum(case((and_(value.is_not(None), ordinal == below), value * (1 - fraction)),
                                            (and_(value.is_not(None), ordinal == below + 1), value * fraction),
                                            else_=0.0)))
            return result

        per_team = select(ranked.c.team, _const("0"), *cont("accept", "team"), *cont("contact", "team")) \
            .group_by(ranked.c.team)
        overall = select(cast(_const("NULL"), String), _const("1"), *cont("accept", "all"), *cont("contact", "all"))
        rows = _rows(db, per_team.union_all(overall))
    result = {}
    for team, overall, a_n, a_50, a_90, c_n, c_50, c_90 in rows:
        if a_n or c_n:
            result[None if overall else team] = ((a_n, _hours(a_50), _hours(a_90)) if a_n else EMPTY,
                                                 (c_n, _hours(c_50), _hours(c_90)) if c_n else EMPTY)
    return result


def _hours(value) -> float | None:
    return None if value is None else round(float(value), 1)


# -- tables: the aggregates shaped for the page, the charts and the CSV -----------------------
@dataclass
class Table:
    slug: str
    title: str
    caption: str
    columns: list[str]
    rows: list[list]
    totals: list
    chart: str  # "stacked": periods × series; "bars": one group of bars per row
    charted: tuple[int, ...]  # the value columns the chart draws
    unit: str = ""
    note: str | None = None


CROSSTABS = {
    "by-status": ("status", "Referrals by current status"),
    "by-team": ("team", "Referrals by receiving team"),
    "by-sender": ("sender", "Referrals by sending organization"),
    "by-zone": ("zone", "Referrals by zone"),
    "by-urgency": ("urgency", "Referrals by urgency"),
    "by-service": ("service", "Referrals by needed service"),
}
TABLES = (*CROSSTABS, "acceptance", "response-times", "outcomes")


def build_table(db: Session, f: Filters, ref: Reference, slug: str) -> Table:
    """One table, from up-to-date rollups (refreshed in the caller's transaction, which commits)."""
    _before_reading(db)
    return _build(db, f, ref, slug)


def build_tables(db: Session, f: Filters, ref: Reference) -> list[Table]:
    _before_reading(db)
    return [_build(db, f, ref, slug) for slug in TABLES]


def _before_reading(db: Session) -> None:
    """Up-to-date rollups, and each statement planned for its own window."""
    plan_for_these_values(db)
    rollups.refresh(db)


def _build(db: Session, f: Filters, ref: Reference, slug: str) -> Table:
    if slug in CROSSTABS:
        return _crosstab(db, f, ref, slug)
    return {"acceptance": _acceptance, "response-times": _response_times, "outcomes": _outcomes}[slug](db, f, ref)


def _span(f: Filters) -> str:
    return f"referrals sent {f.start.isoformat()} to {f.end.isoformat()}"


def _crosstab(db: Session, f: Filters, ref: Reference, slug: str) -> Table:
    dimension, title = CROSSTABS[slug]
    counts = {(p, k): n for p, k, n in counts_by_period(db, f, dimension)}
    keys = _keys(dimension, {k for _, k in counts}, ref)
    periods = sorted(set(period_keys(f.start, f.end, f.period)) | {p for p, _ in counts})
    with_total = dimension != "service"
    rows = []
    for p in periods:
        values = [counts.get((p, k), 0) for k, _ in keys]
        rows.append([period_label(p, f.period), *values, *([sum(values)] if with_total else [])])
    columns = [PERIODS[f.period], *(label for _, label in keys), *(["Total"] if with_total else [])]
    totals = ["All periods", *(sum(row[i] for row in rows) for i in range(1, len(columns)))]
    notes = []
    if dimension == "service":
        notes.append("A referral that names several services is counted under each of them, so the columns add "
                     "up to more than the referrals sent.")
    after = f.end + timedelta(days=1)
    if f.start != first_day(f.start, f.period) or after != first_day(after, f.period):
        notes.append(f"The first or last {f.period} is partial: only referrals sent within the range are counted.")
    note = " ".join(notes) or None
    return Table(slug, title, f"{title}, per {f.period}: {_span(f)}", columns, rows, totals, "stacked",
                 tuple(range(1, len(keys) + 1)), "referrals", note)


def _keys(dimension: str, present: set, ref: Reference) -> list[tuple]:
    """The dimension's columns in a stable order: a fixed vocabulary in full, else what occurs."""
    vocabulary = {"status": codes.STATUSES, "urgency": codes.URGENCIES, "service": codes.SERVICES}.get(dimension)
    if vocabulary is not None:
        return [*vocabulary.items(), *((k, str(k)) for k in sorted(present - vocabulary.keys()))]
    if dimension == "zone":
        return sorted(((k, ref.zones.get(k, ("Unknown zone",))[0]) for k in present), key=lambda kv: kv[1])
    return sorted(((k, ref.orgs.get(k, ("Unknown organization",))[0]) for k in present),
                  key=lambda kv: kv[1].lower())


def _rate(accepted: int, declined: int) -> float | None:
    return round(100 * accepted / (accepted + declined), 1) if accepted + declined else None


def _team_name(ref: Reference, team) -> str:
    return ref.orgs.get(team, ("Unknown organization",))[0]


def _acceptance(db: Session, f: Filters, ref: Reference) -> Table:
    rows = sorted(([_team_name(ref, team), n, accepted, declined, waiting, _rate(accepted, declined)]
                   for team, n, accepted, declined, waiting in answer_counts(db, f)), key=lambda r: r[0].lower())
    sums = [sum(row[i] for row in rows) for i in range(1, 5)]
    columns = ["Receiving team", "Referrals", "Accepted", "Declined", "Awaiting an answer", "Acceptance rate (%)"]
    return Table("acceptance", "Acceptance rate", f"Answers by receiving team: {_span(f)}", columns, rows,
                 ["All teams", *sums, _rate(sums[1], sums[2])], "bars", (5,), "%",
                 "The acceptance rate is accepted ÷ (accepted + declined); referrals still awaiting an answer, "
                 "or cancelled before one, are left out.")


def _response_times(db: Session, f: Filters, ref: Reference) -> Table:
    times = response_times(db, f)

    def row(label, a, c):
        return [label, a[0], a[1], a[2], c[0], c[1], c[2]]

    rows = sorted((row(_team_name(ref, t), a, c) for t, (a, c) in times.items() if t is not None),
                  key=lambda r: r[0].lower())
    totals = row("All teams", *times.get(None, (EMPTY, EMPTY)))
    columns = ["Receiving team", "Accepted", "Median hours to accept", "90th percentile hours to accept",
               "Reached", "Median hours to first contact", "90th percentile hours to first contact"]
    return Table("response-times", "Time to accept and to first contact",
                 f"Hours from sending to acceptance and to the first contact that reached the person: {_span(f)}",
                 columns, rows, totals, "bars", (2, 5), "hours",
                 "Medians and 90th percentiles are interpolated between the nearest ranks; the chart shows the "
                 "medians.")


def _outcomes(db: Session, f: Filters, ref: Reference) -> Table:
    counts = dict(outcome_counts(db, f))
    keys = [*codes.COMPLETION_OUTCOMES.items(), *((k, k) for k in sorted(counts.keys() - codes.COMPLETION_OUTCOMES))]
    total = sum(counts.values())

    def share(n):
        return round(100 * n / total, 1) if total else None

    rows = [[label, counts.get(k, 0), share(counts.get(k, 0))] for k, label in keys]
    return Table("outcomes", "Outcomes", f"Completed referrals by outcome: {_span(f)}",
                 ["Outcome", "Completed referrals", "Share of completed (%)"], rows,
                 ["All outcomes", total, share(total)], "bars", (1,), "referrals")
