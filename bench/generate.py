"""Generate a city's referral history in PostgreSQL, reproducibly (seeded), and fast.

    python bench/generate.py [--database-url URL] [--referrals 1000000] [--seed 1] [--recreate]

Creates the database if it is absent and migrates it (portal.migrate.upgrade); refuses a database
that already holds referrals unless --recreate. Zones, organizations and accounts go through the
portal's services; the history (consents, referrals, services, events, contact attempts, data
keys, audit events) is simulated by bench/history.py in worker processes and loaded with COPY.
Personal fields still held are sealed by portal/referrals/vault.py under the KEK ring in the
state directory (created once, reused). Audit events get gapless seq numbers in time order and
audit_head.size their count; a checkpoint is signed over them, and the releases that were due
are published, as the nightly jobs would have. Prints how long each part took.

Bulk loading runs with session_replication_role = replica (foreign-key triggers off, as
pg_restore does): the simulation writes consistent rows, and a check afterwards counts orphans.
Replica mode also skips the triggers that keep the dashboard's daily rollups, so they are rebuilt
afterwards (portal/dashboards/rollups.rebuild, what `portal dashboards rebuild` runs).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench import city, history  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/portal_bench"
COLUMNS = {
    "consents": "id, method, obtained_by_id, obtained_at, purpose, data_categories, expires_at, revoked_at, "
                "revoked_by_id, created_at",
    "consent_recipients": "consent_id, organization_id",
    "referrals": "id, sender_org_id, receiver_org_id, created_by_id, assigned_to_id, consent_id, parent_id, status, "
                 "status_reason, outcome, urgency, zone_id, age_band, reason, retaliation_risk, personal_enc, "
                 "note_enc, personal_purged_at, created_at, accepted_at, first_contact_at, closed_at, updated_at, "
                 "version",
    "referral_services": "referral_id, service",
    "referral_events": "id, referral_id, at, actor_id, actor_org_id, from_status, to_status, reason_code",
    "contact_attempts": "id, referral_id, worker_id, at, outcome, note_enc",
    "data_keys": "referral_id, kek_id, wrapped_key, created_at",
    "bench_audit_staging": "at, k1, k2, actor_id, organization_id, action, resource_type, resource_id, decision, "
                           "policy_ids, request_id, detail",
}
TABLE_OF = {"consents": "consents", "recipients": "consent_recipients", "referrals": "referrals",
            "services": "referral_services", "events": "referral_events", "attempts": "contact_attempts",
            "keys": "data_keys", "audit": "bench_audit_staging"}
STAGING = """CREATE UNLOGGED TABLE IF NOT EXISTS bench_audit_staging (
    at timestamptz NOT NULL, k1 bigint NOT NULL, k2 bigint NOT NULL, actor_id uuid, organization_id uuid,
    action varchar(64) NOT NULL, resource_type varchar(32) NOT NULL, resource_id varchar(64),
    decision varchar(8) NOT NULL, policy_ids varchar(255) NOT NULL, request_id varchar(32), detail text NOT NULL)"""


def libpq(url: str) -> str:
    """The SQLAlchemy URL as psycopg takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Clock:
    """Named timings, printed as they finish."""

    def __init__(self, quiet: bool = False):
        self.parts: dict[str, float] = {}
        self.quiet = quiet

    def run(self, name: str, work, *args, **kwargs):
        started = time.perf_counter()
        result = work(*args, **kwargs)
        self.parts[name] = round(time.perf_counter() - started, 2)
        if not self.quiet:
            print(f"  {name:<34} {self.parts[name]:>8.1f} s", flush=True)
        return result


# -- database --------------------------------------------------------------------------------
def prepare_database(url: str, recreate: bool) -> None:
    """Create the database if it is absent (drop it first with `recreate`), then migrate it."""
    from portal import migrate
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if recreate:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        if conn.scalar(text("SELECT count(*) FROM organizations")):
            raise SystemExit(f"generate: database {name} already holds a city; use --recreate to start over")
    engine.dispose()


# -- workers: simulate a range of referrals and COPY it -------------------------------------
_WORKER: dict = {}


def _init_worker(world, kek_text: str, seed: int, dsn: str) -> None:
    from portal.crypto import parse_keyring
    _WORKER.update(world=world, ring=parse_keyring(kek_text), seed=seed, dsn=dsn, conn=None)


def copy_rows(cursor, rows: history.Rows) -> dict[str, int]:
    counts = {}
    for attribute, table in TABLE_OF.items():
        values = getattr(rows, attribute)
        with cursor.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        counts[table] = len(values)
    return counts


def _chunk(task) -> dict:
    first, last, count = task
    started = time.perf_counter()
    rows = history.simulate(_WORKER["world"], _WORKER["ring"], _WORKER["seed"], first, last, count)
    simulated = time.perf_counter()
    if _WORKER["conn"] is None:
        _WORKER["conn"] = psycopg.connect(_WORKER["dsn"])
        _WORKER["conn"].execute("SET session_replication_role = replica")
    conn = _WORKER["conn"]
    with conn.cursor() as cursor:
        counts = copy_rows(cursor, rows)
    conn.commit()
    return {"counts": counts, "simulate_s": simulated - started, "copy_s": time.perf_counter() - simulated}


def load_history(world, kek_text: str, seed: int, dsn: str, count: int, workers: int, chunk: int,
                 quiet: bool) -> dict:
    tasks = [(first, min(first + chunk, count), count) for first in range(0, count, chunk)]
    totals: dict[str, int] = {}
    busy = {"simulate_s": 0.0, "copy_s": 0.0}
    done = 0
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_init_worker, initargs=(world, kek_text, seed, dsn)) as pool:
        for result in pool.imap(_chunk, tasks):
            for table, n in result["counts"].items():
                totals[table] = totals.get(table, 0) + n
            busy["simulate_s"] += result["simulate_s"]
            busy["copy_s"] += result["copy_s"]
            done += 1
            if not quiet and (done % max(1, len(tasks) // 10) == 0 or done == len(tasks)):
                print(f"    {min(done * chunk, count):>9,} of {count:,} referrals", flush=True)
    return {"rows": totals, **{k: round(v, 1) for k, v in busy.items()}}


# -- the audit window ------------------------------------------------------------------------
def audit_start_for(world: history.World, ring, seed: int, count: int, target: int):
    """When the log must begin to hold about `target` events (with a margin): measured on a sample."""
    sample = min(count, 3000)
    probe = history.World(**{**world.__dict__, "audit_start": world.start})
    rows = history.Rows()
    simulation = history.Simulation(probe, ring, seed, rows)
    for i in range(sample):
        simulation.referral(int(i * count / sample), count)
    times = sorted((row[0] for row in rows.audit), reverse=True)
    wanted = math.ceil(target * 1.15 * sample / count)
    if wanted >= len(times):
        return world.start
    return times[wanted]


def finish_audit(dsn: str, target: int) -> int:
    """The newest `target` staged events become the log, seq in time order; the head agrees."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET work_mem = '256MB'")
        conn.execute("""
            INSERT INTO audit_events (seq, at, actor_id, organization_id, action, resource_type, resource_id,
                                      decision, policy_ids, request_id, detail)
            SELECT row_number() OVER (ORDER BY at, k1, k2) - 1, at, actor_id, organization_id, action,
                   resource_type, resource_id, decision, policy_ids, request_id, detail
            FROM (SELECT * FROM bench_audit_staging ORDER BY at DESC, k1 DESC, k2 DESC LIMIT %s) newest
            ORDER BY 1""", (target,))
        size = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
        conn.execute("UPDATE audit_head SET size = %s WHERE id = 1", (size,))
        conn.execute("DROP TABLE bench_audit_staging")
    return size


def orphans(dsn: str) -> dict[str, int]:
    """Rows pointing at nothing: must all be zero (the load ran without foreign-key triggers)."""
    checks = {
        "referrals.consent_id": "SELECT count(*) FROM referrals r LEFT JOIN consents c ON c.id = r.consent_id "
                                "WHERE c.id IS NULL",
        "referrals.parent_id": "SELECT count(*) FROM referrals r LEFT JOIN referrals p ON p.id = r.parent_id "
                               "WHERE r.parent_id IS NOT NULL AND p.id IS NULL",
        "referral_events.referral_id": "SELECT count(*) FROM referral_events e LEFT JOIN referrals r "
                                       "ON r.id = e.referral_id WHERE r.id IS NULL",
        "referrals.created_by_id": "SELECT count(*) FROM referrals r LEFT JOIN users u ON u.id = r.created_by_id "
                                   "WHERE u.id IS NULL",
        "data_keys.referral_id": "SELECT count(*) FROM data_keys k LEFT JOIN referrals r ON r.id = k.referral_id "
                                 "WHERE r.id IS NULL",
    }
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(sql).fetchone()[0] for name, sql in checks.items()}


def rebuild_rollups(database) -> None:
    """The dashboard's daily rollups: COPY in replica mode skipped the triggers that keep them."""
    from portal.dashboards import rollups
    with database.sessions() as db:
        rollups.rebuild(db)
        db.commit()


def vacuum(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


# -- the nightly jobs that would have run ----------------------------------------------------
def publish_releases(database, now) -> int:
    from portal.config import ROOT as PORTAL_ROOT
    from portal.releases.catalog import load_catalog
    from portal.releases.publish import publish_due
    with database.sessions() as db:
        return len(publish_due(db, load_catalog(PORTAL_ROOT / "policies"), now))


def sign_checkpoint(database, state: city.State, now) -> int:
    from portal.audit import checkpoint, witness
    key = checkpoint.load_private_key(state.audit_key_file)
    with database.sessions() as db:
        _, signed = witness.sign_checkpoint(db, key, witness.origin_for("https://portal.bench.invalid"), now)
        db.commit()
    return signed.size


# -- main ------------------------------------------------------------------------------------
def generate(url: str, referrals: int, seed: int, state_dir: Path, audit_events: int | None = None,
             years: float = 3, backlog_days: int = 95, retention_days: int = 180, workers: int = 2,
             chunk: int = 5000, recreate: bool = False, quiet: bool = False) -> dict:
    from portal.db import Database, utcnow

    clock = Clock(quiet)
    state = city.State(state_dir)
    ring, credentials = state.ring(), state.credentials
    audit_events = referrals if audit_events is None else audit_events
    if not quiet:
        print(f"generating {referrals:,} referrals (seed {seed}) into {make_url(url).database}", flush=True)
    clock.run("create and migrate the database", prepare_database, url, recreate)
    now = utcnow().replace(second=0, microsecond=0)
    database = Database(url)
    with database.sessions() as db:
        described = clock.run("zones, organizations, accounts", city.build, db, ring, random.Random(seed),
                              credentials)
        db.commit()
    retention_ran = history.nightly(now - timedelta(days=backlog_days + 1))
    world = history.World(now=now, start=now - timedelta(days=round(365 * years)), retention_ran=retention_ran,
                          retention_days=retention_days, audit_start=now, **described)
    world.audit_start = audit_start_for(world, ring, seed, referrals, audit_events) if audit_events else now
    dsn = libpq(url)
    with psycopg.connect(dsn) as conn:
        conn.execute(STAGING)
    database.engine.dispose()  # no pooled connection crosses the fork into the workers
    loaded = clock.run("history (simulate, seal, COPY)", load_history, world, state.kek_file.read_text(), seed,
                       dsn, referrals, workers, chunk, quiet)
    size = clock.run("audit log (seq in time order)", finish_audit, dsn, audit_events)
    clock.run("dashboard rollups rebuilt", rebuild_rollups, database)
    clock.run("vacuum and analyze", vacuum, dsn)
    missing = orphans(dsn)
    if any(missing.values()):
        raise SystemExit(f"generate: orphaned rows {missing}")
    published = clock.run("releases published (nightly job)", publish_releases, database, now)
    clock.run("audit checkpoint signed", sign_checkpoint, database, state, now)
    database.dispose()
    manifest = {
        "database": make_url(url).database, "seed": seed, "referrals_sent": referrals, "now": now.isoformat(),
        "history_start": world.start.isoformat(), "retention_last_ran": retention_ran.isoformat(),
        "retention_days": retention_days, "audit_start": world.audit_start.isoformat(), "audit_events": size,
        "rows": loaded["rows"], "releases": published, "timings_s": clock.parts,
        "worker_seconds": {k: loaded[k] for k in ("simulate_s", "copy_s")}, "workers": workers,
        "total_s": round(sum(clock.parts.values()), 1),
    }
    state.manifest_path(manifest["database"]).write_text(json.dumps(manifest, indent=2))
    if not quiet:
        rows = loaded["rows"]
        print(f"done in {manifest['total_s']:.0f} s: {rows['referrals']:,} referrals ({referrals:,} sent by hospitals, "
              f"the rest handoffs), {rows['referral_events']:,} events, {rows['contact_attempts']:,} contact "
              f"attempts, {rows['data_keys']:,} data keys still held, {size:,} audit events, {published} releases",
              flush=True)
    return manifest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--referrals", type=int, default=1_000_000, help="referrals sent by hospital programs")
    parser.add_argument("--audit-events", type=int, default=None, help="events in the audit log (default: "
                        "as many as referrals); the log begins as late as that allows")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--retention-backlog-days", type=int, default=95,
                        help="days since the nightly retention job last ran (the backlog it will purge)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--state-dir", type=Path, default=ROOT / "instance" / "bench",
                        help="KEK, secret key, audit signing key and account credentials (reused)")
    parser.add_argument("--recreate", action="store_true", help="drop the database first")
    args = parser.parse_args(argv)
    generate(args.database_url, args.referrals, args.seed, args.state_dir, args.audit_events, args.years,
             args.retention_backlog_days, workers=args.workers, chunk=args.chunk, recreate=args.recreate)


if __name__ == "__main__":
    main()
