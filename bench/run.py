"""The benchmark of issue #6, in one command: `make bench` (or `make bench-smoke`).

    python bench/run.py [--database-url URL] [--referrals 1000000]     # the full run
    python bench/run.py --smoke                                        # ~20,000 referrals, seconds of load

Generates the history if the database holds none (bench/generate.py), then measures:

  a  the CVI inbox (50 rows) and a referral's page at 16 concurrent clients against gunicorn
     (2 sync workers, production settings), side by side with baseline endpoints (bench/app.py)
     that run the same SQL and template without login, policy, audit or decryption;
  c  every city dashboard table and police table in-process on PostgreSQL (bench/aggregates.py);
  d  referral creation through POST /api/v1/referrals at 8 concurrent clients;
  e  `portal audit verify` over the whole log and `portal retention run` over the backlog;
  f  the peak resident memory (VmHWM) of every gunicorn worker under load.

Prints a table (every figure with its goal) and writes bench/results/latest.json. Timings are
never asserted; the run fails (exit 1) when a request answers other than 2xx, a page lacks its
rows, a command fails, or the audit log does not verify. --smoke generates into a scratch
database that it drops afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench import aggregates, city, generate  # noqa: E402
from bench.server import BIN, Browser, MemoryMonitor, Server  # noqa: E402

ROW_MARK = '<li class="referral '
GOALS = {"ratio": 0.7, "create_rps": 200, "verify_s": 20, "verify_events": 1_000_000, "retention_s": 60,
         "retention_referrals": 100_000, "worker_mb": 150}


class Failures(list):
    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.append(message)
            print(f"  FAILED: {message}", flush=True)


# -- the machine -----------------------------------------------------------------------------
def machine(database_url: str) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    engine = create_engine(database_url)
    with engine.connect() as conn:
        pg = conn.scalar(text("SELECT version()")).split(" on ")[0]
        settings = {name: conn.scalar(text(f"SHOW {name}")) for name in ("shared_buffers", "work_mem",
                                                                         "max_parallel_workers_per_gather")}
    engine.dispose()
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": round(mem_kb / 1024 / 1024, 1), "postgresql": pg,
            "postgresql_settings": settings, "python": platform.python_version(), "kernel": platform.release()}


# -- who signs in, and where they go -----------------------------------------------------------
def cast(database_url: str) -> dict:
    """The busiest CVI team's members (inbox, detail pages) and hospital staff (creation)."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        team = conn.execute(text(
            "SELECT receiver_org_id FROM referrals r JOIN organizations o ON o.id = r.receiver_org_id "
            "WHERE o.kind = 'cvi_team' AND r.status IN ('sent','accepted','in_progress','on_hold') "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar_one()
        members = conn.execute(text("SELECT id, email, role FROM users WHERE organization_id = :t ORDER BY role DESC, "
                                    "email"), {"t": team}).all()
        pages = {}
        for user_id, _, role in members:
            # Referrals this member may open: leads see the team's, staff their own and unassigned ones.
            mine = "" if role != "staff" else "AND (assigned_to_id = :u OR assigned_to_id IS NULL)"
            pages[user_id] = [row[0] for row in conn.execute(text(
                "SELECT r.id FROM referrals r JOIN data_keys k ON k.referral_id = r.id WHERE r.receiver_org_id = :t "
                f"AND r.status IN ('accepted','in_progress','on_hold') {mine} ORDER BY r.created_at DESC LIMIT 40"),
                {"t": team, "u": user_id})]
        nurses = conn.execute(text(
            "SELECT u.id, u.email FROM users u JOIN organizations o ON o.id = u.organization_id "
            "WHERE o.kind = 'hospital_program' AND u.role = 'staff' ORDER BY o.name, u.email")).all()
        zones = conn.execute(text(
            "SELECT z.code, oz.organization_id FROM zones z JOIN organization_zones oz ON oz.zone_id = z.id "
            "JOIN organizations o ON o.id = oz.organization_id WHERE o.kind = 'cvi_team' ORDER BY z.code")).all()
    engine.dispose()
    return {"team": team, "members": [(m[0], m[1]) for m in members if pages[m[0]]], "pages": pages,
            "nurses": [(n[0], n[1]) for n in nurses], "zones": zones}


def referral_body(zone: str, team, n: int) -> str:
    """A new referral as a hospital's client sends it (JSON API v1)."""
    return json.dumps({
        "receiver_org_id": str(team),
        "person": {"preferred_name": f"Bench {n}", "phone": "(555) 201-%04d" % (n % 10000), "best_time": "evenings",
                   "language": "English", "safe_to_text": True, "safe_voicemail": False, "code_word": None},
        "age_band": "18_24", "zone": zone, "reason": "gunshot_wound",
        "services": ["intensive_mentoring", "care_management"], "urgency": "urgent" if n % 3 == 0 else "routine",
        "note": "Prefers a call after school hours.",
        "consent": {"method": "verbal", "recipient_org_ids": [str(team)], "data_categories": ["contact", "note"]},
    })


def inbox_plans(database_url: str, user_id) -> list[dict]:
    """The inbox's own statements for this member, explained (EXPLAIN ANALYZE, as item c)."""
    from portal.db import Database
    from portal.models import User
    from portal.referrals import queries
    database = Database(database_url)
    db = database.sessions()
    try:
        user = db.get(User, user_id)
        with aggregates.Statements(database.engine) as captured:
            queries.inbox(db, user, None)
            queries.new_in_inbox(db, user)
        return aggregates.explain(db, captured.seen)
    finally:
        db.close()
        database.dispose()


# -- load phases -------------------------------------------------------------------------------
def load(port: int, clients: list[dict] | dict, duration: float, warmup: float, workdir: Path, name: str,
         rounds: int = 1) -> dict:
    """Run bench/loadgen.py in its own process and return its result: `clients` a list, or
    {group name: clients} taking turns for `rounds` rounds (see bench/loadgen.run)."""
    spec, out = workdir / f"{name}.spec.json", workdir / f"{name}.result.json"
    shape = {"groups": clients, "rounds": rounds} if isinstance(clients, dict) else {"clients": clients}
    spec.write_text(json.dumps({"host": "127.0.0.1", "port": port, "duration": duration, "warmup": warmup,
                                **shape}))
    subprocess.run([str(BIN / "python"), "-m", "bench.loadgen", str(spec), str(out)], cwd=ROOT, check=True)
    return json.loads(out.read_text())


def web(env: dict, people: dict, credentials: dict, args, workdir: Path, failures: Failures) -> dict:
    """Items a, d and f against one gunicorn."""
    server = Server(env, workdir / "gunicorn.log", workers=2, max_requests=args.max_requests)
    results: dict = {}
    try:
        server.wait_ready()
        started = time.perf_counter()
        browsers = {}
        for user_id, email in people["members"][:args.clients]:
            browsers[user_id] = Browser(server.port)
            browsers[user_id].sign_in(email, credentials["password"], credentials["totp_secret"], "/referrals/inbox")
        nurses = []
        for _, email in people["nurses"][:args.create_accounts]:
            nurse = Browser(server.port)
            nurse.sign_in(email, credentials["password"], credentials["totp_secret"], "/referrals/new")
            nurses.append(nurse)
        results["sign_in_s"] = round(time.perf_counter() - started, 1)
        results["sessions"] = {"cvi": len(browsers), "hospital": len(nurses)}
        print(f"  signed in {len(browsers)} CVI and {len(nurses)} hospital accounts in {results['sign_in_s']} s",
              flush=True)
        monitor = MemoryMonitor(server)
        monitor.reset()  # the peak under load, not sign-in's argon2id
        monitor.start()
        members = [uid for uid, _ in people["members"][:args.clients]]
        seat = [members[i % len(members)] for i in range(args.clients)]  # more clients than members share

        def clients(path_of, count: str | None = None, baseline: bool = False) -> list[dict]:
            return [{"method": "GET", "paths": path_of(uid),
                     "headers": {"X-Forwarded-Proto": "https",
                                 **({} if baseline else {"Cookie": browsers[uid].cookie_header()})},
                     "count": count} for uid in seat]

        # Each page and its baseline take turns (args.rounds rounds), so that both meet the same
        # spells of other work on the machine: the ratio is the figure that matters.
        pairs = {
            "inbox": {"inbox": clients(lambda uid: ["/referrals/inbox"], ROW_MARK),
                      "inbox_baseline": clients(lambda uid: [f"/bench/baseline/inbox?user={uid}"], ROW_MARK, True)},
            "detail": {"detail": clients(lambda uid: [f"/referrals/{r}" for r in people["pages"][uid]]),
                       "detail_baseline": clients(lambda uid: [f"/bench/baseline/referrals/{r}?user={uid}"
                                                               for r in people["pages"][uid]], baseline=True)},
        }
        for pair, groups in pairs.items() if "a" in args.items else ():
            results.update(load(server.port, groups, args.duration, args.warmup, workdir, pair, args.rounds))
            for name in groups:
                _report(name, results[name], failures)
        creators = []
        for i in range(args.create_clients if "d" in args.items else 0):
            # Each client takes turns with its share of the accounts: the API's rate limit is per account.
            mine = nurses[i::args.create_clients] or [nurses[i % len(nurses)]]
            code, team = people["zones"][i % len(people["zones"])]
            creators.append({"method": "POST", "paths": ["/api/v1/referrals"], "body": referral_body(code, team, i),
                             "variants": [{"headers": {"X-Forwarded-Proto": "https", "Content-Type": "application/json",
                                                       "Accept": "application/json", **nurse.headers("/referrals/new")}}
                                          for nurse in mine]})
        if creators:
            results["create"] = load(server.port, creators, args.duration, args.warmup, workdir, "create")
            _report("create", results["create"], failures)
        monitor.stop()
        results["memory"] = monitor.summary()
        for name in ("inbox", "inbox_baseline") if "a" in args.items else ():
            counted = results[name].get("counted", {})
            failures.check(counted.get("min", 0) > 0, f"{name}: a page showed no rows ({counted})")
    finally:
        server.stop()
    return results


def _report(name: str, result: dict, failures: Failures) -> None:
    print(f"  {name:<16} {result['rps']:>8.1f} req/s   p50 {result['p50_ms']} ms   p95 {result['p95_ms']} ms   "
          f"statuses {result['statuses']}", flush=True)
    bad = {status: n for status, n in result["statuses"].items() if not status.startswith("2")}
    failures.check(not bad and result["ok"] > 0, f"{name}: answers other than 2xx {bad} {result['failures'][:2]}")


# -- commands ----------------------------------------------------------------------------------
def portal_command(env: dict, *args: str) -> tuple[float, str, int]:
    """(seconds, what it printed on stdout and then stderr, exit status) of one `portal` command."""
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "portal"), *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True)
    return round(time.perf_counter() - started, 2), done.stdout + done.stderr, done.returncode


def _last_line(output: str, marker: str) -> str:
    return next((line for line in reversed(output.splitlines()) if marker in line), "")


def commands(env: dict, database_url: str, failures: Failures) -> dict:
    """Item e: verify the whole log, run retention over the backlog, verify again."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        events = conn.scalar(text("SELECT size FROM audit_head"))
        # Referrals still holding details that retention must shred: under an expired consent, or
        # closed longer than the retention period (portal/referrals/maintenance.py's two rules).
        due = conn.scalar(text(
            "SELECT count(*) FROM referrals r JOIN consents c ON c.id = r.consent_id WHERE r.personal_purged_at IS NULL "
            "AND ((c.revoked_at IS NULL AND c.expires_at <= now()) OR (r.status IN ('declined','completed','cancelled') "
            "AND r.closed_at < now() - make_interval(days => :d)))"),
            {"d": int(env.get("PORTAL_RETENTION_DAYS", 180))})
        purged_before = conn.scalar(text("SELECT count(*) FROM referrals WHERE personal_purged_at IS NOT NULL"))
    startup, _, _ = portal_command(env, "audit", "public-key")
    verify_s, output, code = portal_command(env, "audit", "verify")
    failures.check(code == 0 and "the audit log is intact" in output, f"portal audit verify failed: {output[-500:]}")
    print(f"  audit verify     {events:,} events in {verify_s} s (start-up {startup} s): exit {code}", flush=True)
    retention_s, retention_out, code = portal_command(env, "retention", "run")
    failures.check(code == 0, f"portal retention run failed: {retention_out[-500:]}")
    with engine.connect() as conn:
        purged = conn.scalar(text("SELECT count(*) FROM referrals WHERE personal_purged_at IS NOT NULL")) - purged_before
    engine.dispose()
    failures.check(purged >= due, f"retention purged {purged} referrals of the {due} that were due")
    refreshed = re.search(r"refreshed in ([0-9.]+) s", retention_out)
    refresh_s = float(refreshed.group(1)) if refreshed else None
    print(f"  retention run    {purged:,} referrals purged ({due:,} were due) in {retention_s} s "
          f"(of which the dashboard rollups' refresh {refresh_s} s): exit {code}", flush=True)
    after_s, after_out, code = portal_command(env, "audit", "verify")
    failures.check(code == 0 and "the audit log is intact" in after_out,
                   f"portal audit verify after retention failed: {after_out[-500:]}")
    return {"startup_s": startup, "verify": {"events": events, "seconds": verify_s, "output": output.strip()[-400:]},
            "retention": {"due": due, "purged": purged, "seconds": retention_s, "rollup_refresh_s": refresh_s,
                          "output": _last_line(retention_out, "expired consent")},
            "verify_after_retention": {"seconds": after_s, "ok": code == 0}}


# -- the table ----------------------------------------------------------------------------------
def rows(result: dict) -> list[tuple]:
    """(item, figure, value, goal, met) for every figure."""
    out = []
    web_ = result.get("web", {})
    for page in ("inbox", "detail"):
        portal, base = web_.get(page), web_.get(f"{page}_baseline")
        if portal and base:
            ratio = round(portal["rps"] / base["rps"], 2) if base["rps"] else None
            out += [("a", f"{page}: portal req/s (16 clients)", portal["rps"], "", None),
                    ("a", f"{page}: portal p50 / p95 ms", f"{portal['p50_ms']} / {portal['p95_ms']}", "", None),
                    ("a", f"{page}: baseline req/s", base["rps"], "", None),
                    ("a", f"{page}: baseline p50 / p95 ms", f"{base['p50_ms']} / {base['p95_ms']}", "", None),
                    ("a", f"{page}: portal ÷ baseline throughput", ratio, f">= {GOALS['ratio']}",
                     ratio is not None and ratio >= GOALS["ratio"])]
            if portal.get("counted"):
                out.append(("a", f"{page}: rows on every page (min–max)",
                            f"{portal['counted']['min']}–{portal['counted']['max']}", "", None))
    policy = result.get("policy")  # item b, measured by bench/policy_bench.py and read from its results
    for row in (policy or {}).get("rows", []):
        out.append(("b", f"{row['engine']}: {row['mode']}, p50 µs a decision", row["p50_us"],
                    f"<= {row['goal_us']}" if row.get("goal_us") else "",
                    row.get("goal_met") if row.get("goal_us") else None))
    agg = result.get("aggregates", {})
    for entry in agg.get("city", []):
        out.append(("c", f"city {entry['table']} ({entry['window']}) p95 ms [naive {entry['naive']['p95_ms']}]",
                    entry["portal"]["p95_ms"], f"< {aggregates.GOAL_MS}", entry["goal_met"]))
    for entry in agg.get("police", []):
        out.append(("c", f"police {entry['table']} p95 ms [live {entry['naive']['p95_ms']}]",
                    entry["portal"]["p95_ms"], f"< {aggregates.GOAL_MS}", entry["goal_met"]))
    for entry in agg.get("publication", []):
        out.append(("c", f"publication: {entry['query']} p95 ms", entry["portal"]["p95_ms"],
                    f"< {aggregates.GOAL_MS}", entry["goal_met"]))
    if "create" in web_:
        create = web_["create"]
        out += [("d", "create referral req/s (8 clients)", create["rps"], f">= {GOALS['create_rps']}",
                 create["rps"] >= GOALS["create_rps"]),
                ("d", "create p50 / p95 ms", f"{create['p50_ms']} / {create['p95_ms']}", "", None)]
    cmd = result.get("commands")
    if cmd:
        out.append(("d", "audit chain intact after creation", "yes" if cmd["verify"]["seconds"] is not None and
                    "intact" in cmd["verify"]["output"] else "no", "yes", "intact" in cmd["verify"]["output"]))
        events, seconds, startup = cmd["verify"]["events"], cmd["verify"]["seconds"], cmd["startup_s"]
        # The command's start-up (loading the app) is paid once, whatever the size of the log.
        at_goal = round(startup + (seconds - startup) * GOALS["verify_events"] / events, 1) if events else None
        out += [("e", f"audit verify s ({events:,} events)", seconds, f"< {GOALS['verify_s']} at 1M",
                 at_goal is not None and at_goal < GOALS["verify_s"]),
                ("e", "audit verify s, scaled to 1M events", at_goal, f"< {GOALS['verify_s']}",
                 at_goal is not None and at_goal < GOALS["verify_s"])]
        purged, seconds = cmd["retention"]["purged"], cmd["retention"]["seconds"]
        scaled = round(startup + (seconds - startup) * GOALS["retention_referrals"] / purged, 1) if purged else None
        out += [("e", f"retention run s ({purged:,} referrals)", seconds, f"< {GOALS['retention_s']} at 100k",
                 scaled is not None and scaled < GOALS["retention_s"]),
                ("e", "retention run s, scaled to 100k referrals", scaled, f"< {GOALS['retention_s']}",
                 scaled is not None and scaled < GOALS["retention_s"]),
                ("e", "of which the dashboard rollups' refresh s", cmd["retention"].get("rollup_refresh_s"), "", None)]
    memory = web_.get("memory")
    if memory:
        out.append(("f", f"peak VmHWM per worker MB ({memory['workers_seen']} workers seen)",
                    memory["peak_vmhwm_mb"], f"< {GOALS['worker_mb']}",
                    memory["peak_vmhwm_mb"] is not None and memory["peak_vmhwm_mb"] < GOALS["worker_mb"]))
        if memory.get("peak_sampled_rss_mb") is not None:
            out.append(("f", "largest resident size sampled (every 0.2 s) MB", memory["peak_sampled_rss_mb"], "", None))
    return out


def print_table(result: dict) -> str:
    lines = ["| item | figure | value | goal | met |", "|---|---|---|---|---|"]
    for item, figure, value, goal, met in rows(result):
        lines.append(f"| {item} | {figure} | {value} | {goal} | {'' if met is None else ('yes' if met else 'NO')} |")
    table = "\n".join(lines)
    print(table)
    return table


# -- main ----------------------------------------------------------------------------------------
def drop_database(url: str) -> None:
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def has_history(url: str) -> bool:
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            count = conn.scalar(text("SELECT count(*) FROM referrals"))
        engine.dispose()
        return bool(count)
    except Exception:  # noqa: BLE001 - no database, or not migrated: nothing to reuse
        return False


def redis_url() -> str | None:
    """Redis for the rate limits when one answers on loopback, as production runs them."""
    import redis
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=1).ping()
        return "redis://127.0.0.1:6379/0"
    except redis.RedisError:
        return None


def run(args) -> int:
    failures = Failures()
    state = city.State(args.state_dir)
    url = args.database_url
    result: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "smoke": args.smoke,
                    "goals": GOALS}
    try:
        if args.regenerate or not has_history(url):
            print("item 1: generating the history", flush=True)
            result["generation"] = generate.generate(url, args.referrals, args.seed, args.state_dir,
                                                     recreate=True, quiet=False)
        else:
            result["generation"] = json.loads(state.manifest_path(make_url(url).database).read_text())
            print(f"reusing {make_url(url).database}: {result['generation']['rows']['referrals']:,} referrals, "
                  f"generated {result['generation']['now']}", flush=True)
            if result["generation"].get("measured_at"):
                print(f"  note: an earlier run ({result['generation']['measured_at']}) already purged the retention "
                      "backlog and added referrals; --regenerate for a clean run", flush=True)
        result["machine"] = machine(url)
        env = {**state.environment(url), "PORTAL_SESSION_IDLE_MINUTES": "1440", "PORTAL_LOG_LEVEL": "WARNING"}
        if (redis := redis_url()) is not None:
            env["PORTAL_REDIS_URL"] = redis
        result["redis"] = redis is not None

        if "c" in args.items:
            print("item c: dashboard and police tables, in-process", flush=True)
            from portal.config import ROOT as PORTAL_ROOT
            from portal.db import Database, utcnow
            from portal.releases.catalog import load_catalog
            database = Database(url)
            try:
                result["aggregates"] = aggregates.measure(database, load_catalog(PORTAL_ROOT / "policies"),
                                                          utcnow().date(), args.query_repeats, args.naive_repeats,
                                                          log=lambda line: print(line, flush=True))
            finally:
                database.dispose()

        if args.items & {"a", "d"}:  # f is measured during their load
            print("items a, d, f: gunicorn (2 workers) under load", flush=True)
            people = cast(url)
            result["inbox_sql"] = inbox_plans(url, people["members"][0][0])
            with tempfile.TemporaryDirectory(prefix="portal-bench-") as workdir:
                try:
                    result["web"] = web(env, people, state.credentials, args, Path(workdir), failures)
                except Exception:
                    log = Path(workdir) / "gunicorn.log"
                    if log.exists():
                        print(log.read_text()[-3000:], file=sys.stderr)
                    raise

        if "e" in args.items:
            print("items d, e: audit verify and retention", flush=True)
            result["commands"] = commands(env, url, failures)
        manifest = state.manifest_path(make_url(url).database)
        if manifest.exists():  # this database is no longer as generated: say so to the next run
            manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "measured_at": result["started_at"]},
                                           indent=2))
    finally:
        if args.smoke and not args.keep:
            drop_database(url)
            if args.scratch_state:
                shutil.rmtree(args.state_dir, ignore_errors=True)
    result["failures"] = failures
    policy = ROOT / "bench" / "results" / "policy.json"
    if not args.smoke and policy.exists():  # item b is bench/policy_bench.py's; shown here with the rest
        result["policy"] = {"file": str(policy.relative_to(ROOT)), **json.loads(policy.read_text())}
    result["table"] = print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"results in {args.out}")
    if failures:
        print(f"{len(failures)} failure(s):", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=generate.DEFAULT_URL)
    parser.add_argument("--referrals", type=int, default=1_000_000, help="when generating")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--regenerate", action="store_true", help="generate again even if the database has data")
    parser.add_argument("--state-dir", type=Path, default=ROOT / "instance" / "bench")
    parser.add_argument("--duration", type=float, default=20, help="seconds of measured load per phase")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=4, help="turns each page and its baseline take (item a)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--create-clients", type=int, default=8)
    parser.add_argument("--create-accounts", type=int, default=16,
                        help="hospital accounts the creating clients share (each has its own API rate limit)")
    parser.add_argument("--query-repeats", type=int, default=20)
    parser.add_argument("--naive-repeats", type=int, default=5)
    parser.add_argument("--max-requests", type=int, default=None,
                        help="override gunicorn's worker recycling (docker/gunicorn.conf.py: 10000)")
    parser.add_argument("--items", default="acdef", type=lambda text: set(text) & set("acdef"),
                        help="which items to measure (default acdef; f comes with a or d; b is bench/policy_bench.py)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--smoke", action="store_true", help="20,000 referrals in a scratch database, short load")
    parser.add_argument("--keep", action="store_true", help="with --smoke: keep the scratch database")
    args = parser.parse_args(argv)
    args.scratch_state = False
    if args.items != set("acdef") and args.out == ROOT / "bench" / "results" / "latest.json":
        args.out = ROOT / "bench" / "results" / "partial.json"  # latest.json keeps the last full run
    if args.smoke:
        base = make_url(args.database_url)
        args.database_url = base.set(database=f"portal_bench_smoke_{os.getpid()}_{uuid.uuid4().hex[:6]}") \
            .render_as_string(hide_password=False)
        args.referrals, args.regenerate = min(args.referrals, 20_000), True
        args.duration, args.warmup = min(args.duration, 4), min(args.warmup, 1)
        args.rounds = min(args.rounds, 2)
        args.query_repeats, args.naive_repeats = min(args.query_repeats, 3), min(args.naive_repeats, 1)
        args.create_accounts = min(args.create_accounts, 8)
        if args.state_dir == ROOT / "instance" / "bench":
            args.state_dir, args.scratch_state = Path(tempfile.mkdtemp(prefix="portal-bench-state-")), True
        if args.out == ROOT / "bench" / "results" / "latest.json":
            args.out = ROOT / "bench" / "results" / "smoke.json"
    sys.exit(run(args))


if __name__ == "__main__":
    main()
