"""Item c: every city dashboard table and every police table, timed in-process on PostgreSQL.

For each table: the portal's own code (portal/dashboards/queries.build_table, and
portal/releases/read.table_view for police) run `repeats` times after one warm-up, its SQL
captured and explained (EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)), and a naive computation of the
same numbers, defined honestly:

- city tables: the cohort's rows (only the columns the table needs, as Core tuples) fetched into
  Python and counted there, instead of GROUP BY in the database;
- police tables: the same cells computed live from the referral table at read time (the
  (month, zone, outcome class) atoms over the whole history, and the quarterly medians), instead
  of reading the numbers the release already fixed. The boundary forbids serving police that
  way; it is the cost a live table would have.

Two windows for the city: the page's default (the last twelve weeks, weekly) and the whole
history (monthly). The publication queries behind police releases (one quarter of atoms, one
quarter's median) are timed and explained too: they are the police path's only SQL on referrals.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from datetime import date, timedelta

from sqlalchemy import event, select

from portal.dashboards import queries
from portal.models import referral_services
from portal.releases import publish, read
from portal.releases import queries as release_queries

GOAL_MS = 150


class Statements:
    """The SQL a block of code sends, captured from the engine."""

    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._capture)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._capture)

    def _capture(self, conn, cursor, statement, parameters, context, executemany):
        self.seen.append((statement, parameters))


def _timed(work, repeats: int, budget_s: float = 30) -> dict:
    """p50/p95 of `repeats` runs after a warm-up; a slow query stops after `budget_s` (at least 3 runs)."""
    work()  # warm-up: buffers and compiled statements, as a serving worker has them
    samples = []
    spent = 0.0
    while len(samples) < repeats and (spent < budget_s or len(samples) < min(3, repeats)):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
        spent += samples[-1] / 1000
    samples.sort()
    return {"n": len(samples), "p50_ms": round(statistics.median(samples), 1),
            "p95_ms": round(samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))], 1),
            "max_ms": round(samples[-1], 1)}


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def explain(db, statements) -> list[dict]:
    """EXPLAIN ANALYZE of each captured statement, with a one-line summary of its scans."""
    plans = []
    connection = db.connection()
    for statement, parameters in statements:
        if not statement.lstrip().upper().startswith("SELECT"):
            continue
        result = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
        document = result.scalar()[0]
        scans = sorted({f"{node['Node Type']} on {node['Relation Name']}" + (f" using {node['Index Name']}"
                        if node.get("Index Name") else "")
                        for node in _nodes(document["Plan"]) if "Relation Name" in node})
        plans.append({"sql": statement, "execution_ms": round(document["Execution Time"], 1), "scans": scans,
                      "plan": document["Plan"]})
    return plans


# -- naive computations --------------------------------------------------------------------------
def _period(day, period: str) -> str:
    day = day.date() if hasattr(day, "date") else day
    return queries.first_day(day, period).isoformat()


def naive_table(db, f: queries.Filters, slug: str):
    """The same numbers as build_table, from the cohort's rows counted in Python."""
    r = queries.REFERRALS.c
    where = f.where()
    if slug in queries.CROSSTABS:
        dimension = queries.CROSSTABS[slug][0]
        if dimension == "service":
            statement = select(r.created_at, referral_services.c.service).where(*where) \
                .join(referral_services, referral_services.c.referral_id == r.id)
        else:
            statement = select(r.created_at, r[queries.DIMENSIONS[dimension]]).where(*where)
        return Counter((_period(created, f.period), key) for created, key in db.execute(statement))
    if slug == "acceptance":
        counts = defaultdict(lambda: [0, 0, 0, 0])
        for team, accepted, status in db.execute(select(r.receiver_org_id, r.accepted_at, r.status).where(*where)):
            row = counts[team]
            row[0] += 1
            row[1] += accepted is not None
            row[2] += status == "declined"
            row[3] += status == "sent"
        return dict(counts)
    if slug == "response-times":
        durations = defaultdict(lambda: ([], []))
        for team, created, accepted, reached in db.execute(
                select(r.receiver_org_id, r.created_at, r.accepted_at, r.first_contact_at).where(*where)):
            for i, later in enumerate((accepted, reached)):
                if later is not None:
                    hours = (later - created).total_seconds() / 3600
                    durations[team][i].append(hours)
                    durations[None][i].append(hours)
        return {team: [statistics.quantiles(v, n=10, method="inclusive") if len(v) > 1 else v for v in pair]
                for team, pair in durations.items()}
    if slug == "outcomes":
        return Counter(o for (o,) in db.execute(select(r.outcome).where(*where, r.outcome.is_not(None))))
    raise KeyError(slug)


def naive_police(db, catalog, name: str, first: date, end: date):
    """The table's cells computed live from the referral table over the whole history."""
    spec = catalog.tables[name]
    if spec.statistic == "median_days_to_first_contact":
        quarters = sorted({publish.quarter_of(m) for m in _months(first, end)})
        return {q: release_queries.days_to_first_contact(db, publish.month_start(publish.quarter_months(q)[0]),
                                                          publish.month_end(publish.quarter_months(q)[-1]))
                for q in quarters}
    atoms = release_queries.atom_counts(db, first, end)
    cells = Counter()
    for (month, zone, klass), n in atoms.items():
        period = month if spec.period == "month" else publish.quarter_of(month)
        key = {"zone": zone, "outcome": klass}.get(spec.by, "referrals")
        cells[(period, key)] += n
    return cells


def _months(first: date, end: date) -> list[str]:
    months, month = [], first.strftime("%Y-%m")
    while publish.month_start(month) < end:
        months.append(month)
        month = publish.next_month(month)
    return months


# -- the measurements -------------------------------------------------------------------------
def measure(database, catalog, today: date, repeats: int, naive_repeats: int, log=print) -> dict:
    """Every table: the portal's p50/p95, its plans, the naive p95 and the ratio portal ÷ naive."""
    db = database.sessions()
    try:
        ref = queries.reference(db)
        first = release_queries.first_referral_day(db)
        windows = {"default": queries.Filters(today - timedelta(days=83), today, "week"),
                   "all": queries.Filters(first, today, "month")}
        city = []
        for window, f in windows.items():
            for slug in queries.TABLES:
                entry = {"table": slug, "window": window, "from": f.start.isoformat(), "to": f.end.isoformat(),
                         "period": f.period}
                entry["portal"] = _timed(lambda: queries.build_table(db, f, ref, slug), repeats)
                with Statements(database.engine) as captured:
                    queries.build_table(db, f, ref, slug)
                entry["plans"] = explain(db, captured.seen)
                entry["naive"] = _timed(lambda: naive_table(db, f, slug), naive_repeats)
                entry["ratio_to_naive"] = round(entry["portal"]["p95_ms"] / entry["naive"]["p95_ms"], 3)
                entry["goal_met"] = entry["portal"]["p95_ms"] < GOAL_MS
                log(f"    city {slug:<15} {window:<8} p95 {entry['portal']['p95_ms']:>8.1f} ms   "
                    f"naive {entry['naive']['p95_ms']:>8.1f} ms")
                city.append(entry)
        police = []
        end = today + timedelta(days=1)
        for name in catalog.tables:
            entry = {"table": name}
            entry["portal"] = _timed(lambda: read.table_view(db, catalog, name), repeats)
            with Statements(database.engine) as captured:
                read.table_view(db, catalog, name)
            entry["plans"] = explain(db, captured.seen)
            entry["naive"] = _timed(lambda: naive_police(db, catalog, name, first, end), naive_repeats)
            entry["ratio_to_naive"] = round(entry["portal"]["p95_ms"] / entry["naive"]["p95_ms"], 3)
            entry["goal_met"] = entry["portal"]["p95_ms"] < GOAL_MS
            log(f"    police {name:<32} p95 {entry['portal']['p95_ms']:>8.1f} ms   "
                f"live {entry['naive']['p95_ms']:>8.1f} ms")
            police.append(entry)
        publication = []
        quarter = publish.quarter_of((today.replace(day=1) - timedelta(days=100)).strftime("%Y-%m"))
        q_first = publish.month_start(publish.quarter_months(quarter)[0])
        q_end = publish.month_end(publish.quarter_months(quarter)[-1])
        for label, work in ((f"atom counts {quarter}", lambda: release_queries.atom_counts(db, q_first, q_end)),
                            (f"median days to first contact {quarter}",
                             lambda: release_queries.days_to_first_contact(db, q_first, q_end))):
            entry = {"query": label, "portal": _timed(work, repeats)}
            with Statements(database.engine) as captured:
                work()
            entry["plans"] = explain(db, captured.seen)
            entry["goal_met"] = entry["portal"]["p95_ms"] < GOAL_MS
            log(f"    publication {label:<40} p95 {entry['portal']['p95_ms']:>8.1f} ms")
            publication.append(entry)
        return {"goal_p95_ms": GOAL_MS, "city": city, "police": police, "publication": publication,
                "zones": len(ref.zones), "first_referral_day": first.isoformat()}
    finally:
        db.rollback()
        db.close()

