"""What the indexes this benchmark recommends would change, measured and rolled back.

    python bench/indexes.py [--database-url URL]

Index changes belong in a reviewed migration, not here. Inside one transaction this script times
the portal's own queries (same code as bench/aggregates.py and portal/referrals/queries.py) with
the indexes as migrated, drops them, times the queries again, and rolls the transaction back, so
the database is left exactly as it was. It prints a table and writes bench/results/indexes.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench import aggregates, generate  # noqa: E402

# The indexes this script argued for, now in the models and migrations c0a0d17e0006/0007: it
# measures the portal's queries with them and, dropped inside the rolled-back transaction, without.
MEASURED_INDEXES = ("ix_referrals_inbox_open", "ix_referrals_created_at", "ix_consents_unrevoked_expiry",
                    "ix_referrals_purge_due")


def candidates() -> dict[str, str]:
    """Each measured index's CREATE INDEX statement, as the models define it."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex

    from portal.db import Base
    import portal.models  # noqa: F401 - registers the tables
    indexes = {index.name: index for table in Base.metadata.tables.values() for index in table.indexes}
    return {name: str(CreateIndex(indexes[name]).compile(dialect=postgresql.dialect())) for name in MEASURED_INDEXES}


def _p95(work, repeats: int) -> float:
    return aggregates._timed(work, repeats, budget_s=20)["p95_ms"]


def workloads(db, user, today) -> dict:
    """The queries the candidates are meant for, as the portal runs them."""
    from portal.dashboards import queries as dash
    from portal.referrals import queries
    from portal.releases import publish
    from portal.releases import queries as release_queries
    ref = dash.reference(db)
    window = dash.Filters(today - timedelta(days=83), today, "week")
    quarter = publish.quarter_of((today.replace(day=1) - timedelta(days=100)).strftime("%Y-%m"))
    months = publish.quarter_months(quarter)
    first, end = publish.month_start(months[0]), publish.month_end(months[-1])

    def inbox():
        db.expunge_all()
        queries.inbox(db, user, None)
    jobs = {"inbox (50 rows, busiest team)": inbox}
    for slug in dash.TABLES:
        jobs[f"city {slug} (default window)"] = lambda slug=slug: dash.build_table(db, window, ref, slug)
    jobs[f"publication atom counts {quarter}"] = lambda: release_queries.atom_counts(db, first, end)
    jobs[f"publication median days {quarter}"] = lambda: release_queries.days_to_first_contact(db, first, end)
    jobs["retention: claim 200 expired consents"] = lambda: db.execute(retention_claims(db)[0]).all()
    jobs["retention: claim 200 long-closed referrals"] = lambda: db.execute(retention_claims(db)[1]).all()
    return jobs


def retention_claims(db):
    """The two batch claims of portal/referrals/maintenance.run_retention (without the row locks)."""
    from sqlalchemy import or_, select

    from portal.db import utcnow
    from portal.models import Consent, Referral
    now = utcnow()
    consents = select(Consent).where(Consent.revoked_at.is_(None), Consent.expires_at <= now).limit(200)
    closed = select(Referral.id).where(
        Referral.status.in_(("declined", "completed", "cancelled")), Referral.closed_at < now - timedelta(days=180),
        or_(Referral.personal_enc.is_not(None), Referral.note_enc.is_not(None),
            Referral.personal_purged_at.is_(None))).limit(200)
    return consents, closed


def measure(url: str, repeats: int) -> dict:
    from portal.db import Database, utcnow
    from portal.models import User
    from bench.run import cast
    people = cast(url)
    database = Database(url)
    today = utcnow().date()
    ddl = candidates()
    results: dict = {"candidates": ddl, "p95_ms": {}}
    with database.engine.connect() as conn:
        # No server-side prepared statements: a statement prepared before an index existed can keep a
        # generic plan that cannot use it (a worker started after the migration plans afresh).
        conn.connection.dbapi_connection.prepare_threshold = None
        transaction = conn.begin()
        try:
            db = Session(bind=conn)
            user = db.get(User, people["members"][0][0])
            # With the indexes first, as migrated: an index built inside this transaction may be
            # invisible to it (pg_index.indcheckxmin after HOT updates), so only drops happen here.
            missing = [name for name in ddl if not conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar()]
            if missing:
                raise SystemExit(f"run the migrations first: {', '.join(missing)} missing")
            results["p95_ms"]["with"] = {name: _p95(job, repeats) for name, job in workloads(db, user, today).items()}
            for name in ddl:
                conn.execute(text(f"DROP INDEX {name}"))
            results["p95_ms"]["without"] = {name: _p95(job, repeats) for name, job in workloads(db, user, today).items()}
        finally:
            transaction.rollback()  # the database is left as it was
    database.dispose()
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=generate.DEFAULT_URL)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "indexes.json")
    args = parser.parse_args(argv)
    results = measure(args.database_url, args.repeats)
    print("| query | p95 ms without | p95 ms with the indexes |\n|---|---|---|")
    for name, before in results["p95_ms"]["without"].items():
        print(f"| {name} | {before} | {results['p95_ms']['with'][name]} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
