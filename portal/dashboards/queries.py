"""The city dashboard's numbers, computed in the database, and the tables they make.

Every statement selects only aggregates (counts, sums, percentiles) and the coarse columns they
are grouped by: the period a referral was sent in, sending organization, receiving team, zone,
status, urgency, needed service, outcome. The rows fetched are the groups; no referral row, id
or personal field ever reaches Python. All of them go through `_rows`, the one place a
dashboard statement runs.

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

from sqlalchemy import Float, Integer, case, cast, extract, func, literal_column, select
from sqlalchemy.orm import Session

from portal.models import Organization, Referral, Zone, referral_services
from portal.referrals import codes

PERIODS = {"week": "Week starting", "month": "Month"}
REFERRALS = Referral.__table__  # columns only: the dashboard never loads a Referral object


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
        r = REFERRALS.c
        conditions = [r.created_at >= datetime.combine(self.start, time(), timezone.utc),
                      r.created_at < datetime.combine(self.end + timedelta(days=1), time(), timezone.utc)]
        for column, value in ((r.zone_id, self.zone_id), (r.receiver_org_id, self.receiver_id),
                              (r.sender_org_id, self.sender_id), (r.urgency, self.urgency)):
            if value is not None:
                conditions.append(column == value)
        return conditions


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
    """The first day of the column's UTC week (Monday) or month, as 'YYYY-MM-DD'."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}")
    if dialect == "postgresql":
        day = func.date_trunc(_const(f"'{period}'"), func.timezone(_const("'UTC'"), column))
        return func.to_char(day, _const("'YYYY-MM-DD'"))
    if dialect == "sqlite":  # stored as UTC text; 'weekday 0' moves to Sunday, then back to Monday
        if period == "month":
            return func.strftime(_const("'%Y-%m-01'"), column)
        return func.strftime(_const("'%Y-%m-%d'"), column, _const("'weekday 0'"), _const("'-6 days'"))
    raise NotImplementedError(f"no period bucketing for {dialect}")


def hours_between(later, earlier, dialect: str):
    if dialect == "postgresql":
        return cast(extract("epoch", later) - extract("epoch", earlier), Float) / _const("3600.0")
    if dialect == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * _const("24.0")
    raise NotImplementedError(f"no durations for {dialect}")


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


DIMENSIONS = {"sender": REFERRALS.c.sender_org_id, "team": REFERRALS.c.receiver_org_id, "zone": REFERRALS.c.zone_id,
              "status": REFERRALS.c.status, "urgency": REFERRALS.c.urgency, "service": referral_services.c.service}


def counts_by_period(db: Session, f: Filters, dimension: str) -> list:
    """(period key, dimension key, referrals) per non-empty group. A referral counts once per
    service it needs, so the service groups add up to more than the referrals sent."""
    period = period_start(REFERRALS.c.created_at, f.period, _dialect(db))
    key = DIMENSIONS[dimension]
    statement = select(period, key, func.count()).select_from(REFERRALS)
    if dimension == "service":
        statement = statement.join(referral_services, referral_services.c.referral_id == REFERRALS.c.id)
    return _rows(db, statement.where(*f.where()).group_by(period, key))


def answer_counts(db: Session, f: Filters) -> list:
    """Per receiving team: (team, referrals, accepted, declined, still awaiting an answer)."""
    r = REFERRALS.c
    return _rows(db, select(r.receiver_org_id, func.count(), func.count(r.accepted_at),
                            func.sum(case((r.status == "declined", 1), else_=0)),
                            func.sum(case((r.status == "sent", 1), else_=0)))
                 .where(*f.where()).group_by(r.receiver_org_id))


def outcome_counts(db: Session, f: Filters) -> list:
    r = REFERRALS.c
    return _rows(db, select(r.outcome, func.count()).where(*f.where(), r.outcome.is_not(None)).group_by(r.outcome))


def percentiles(db: Session, f: Filters, later, by_team: bool) -> dict:
    """{team id (None for all teams): (how many, median hours, 90th percentile hours)} from sending
    to `later` (accepted_at or first_contact_at), over the referrals that got there."""
    dialect = _dialect(db)
    hours = hours_between(later, REFERRALS.c.created_at, dialect)
    group = REFERRALS.c.receiver_org_id if by_team else _const("NULL")
    where = [*f.where(), later.is_not(None)]
    if dialect == "postgresql":
        statement = select(group, func.count(hours), *(func.percentile_cont(_const(p)).within_group(hours)
                                                       for p in ("0.5", "0.9"))).where(*where)
        rows = _rows(db, statement.group_by(group) if by_team else statement)
    else:
        partition = [group] if by_team else None
        ranked = select(group.label("team"), hours.label("hours"),
                        (func.row_number().over(partition_by=partition, order_by=hours) - 1).label("ordinal"),
                        func.count().over(partition_by=partition).label("n")).where(*where).subquery()

        def cont(p: str):
            position = _const(p) * (ranked.c.n - 1)
            below = cast(position, Integer)  # floor, as the position is never negative
            fraction = position - below
            return func.sum(case((ranked.c.ordinal == below, ranked.c.hours * (1 - fraction)),
                                 (ranked.c.ordinal == below + 1, ranked.c.hours * fraction), else_=0.0))

        rows = _rows(db, select(ranked.c.team, func.max(ranked.c.n), cont("0.5"), cont("0.9"))
                     .group_by(ranked.c.team))
    return {team: (n or 0, _hours(p50), _hours(p90)) for team, n, p50, p90 in rows if n}


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
    if slug in CROSSTABS:
        return _crosstab(db, f, ref, slug)
    return {"acceptance": _acceptance, "response-times": _response_times, "outcomes": _outcomes}[slug](db, f, ref)


def build_tables(db: Session, f: Filters, ref: Reference) -> list[Table]:
    return [build_table(db, f, ref, slug) for slug in TABLES]


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
    accept = percentiles(db, f, REFERRALS.c.accepted_at, by_team=True)
    contact = percentiles(db, f, REFERRALS.c.first_contact_at, by_team=True)
    empty = (0, None, None)

    def row(label, a, c):
        return [label, a[0], a[1], a[2], c[0], c[1], c[2]]

    rows = sorted((row(_team_name(ref, t), accept.get(t, empty), contact.get(t, empty)) for t in {*accept, *contact}),
                  key=lambda r: r[0].lower())
    totals = row("All teams", percentiles(db, f, REFERRALS.c.accepted_at, by_team=False).get(None, empty),
                 percentiles(db, f, REFERRALS.c.first_contact_at, by_team=False).get(None, empty))
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
