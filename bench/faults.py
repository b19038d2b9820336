"""Load and faults (#6 item 4): two portal instances on one PostgreSQL, mixed traffic, a killed
database connection and a restarted instance; afterwards nothing lost, nothing accepted twice,
every response a success or a clear error, and the audit log intact.

    .venv/bin/python bench/faults.py                 # 60 s of traffic over 500 referrals of history
    .venv/bin/python bench/faults.py --smoke         # ~15 s (CI), a little history
    .venv/bin/python bench/faults.py --seconds 120 --keep

It creates a scratch database beside PORTAL_TEST_POSTGRES_URL (default postgres on 127.0.0.1),
seeds it with `portal db upgrade`, `portal demo-data` (development settings, demo accounts with a
known TOTP secret) and three more North team workers, takes an audit checkpoint, then starts two
gunicorn instances (2 workers each, production settings) on free loopback ports. Clients in
threads sign in with password and code and then, until the time is up: the hospital creates
referrals (form and API, each with a client-made id) and revokes consents; four North team
workers race to accept the newest referrals and hand them off; the city reads its dashboard and
police partners read releases. At 30 % and 70 % of the time every database connection of the
portal is killed (pg_terminate_backend); at 50 % one instance is stopped (SIGTERM) and started
again. The database is dropped at the end unless --keep.

Exit status 1 on: a referral whose creation succeeded but is missing or doubled, a referral
accepted twice, a 5xx that is not a clear 503, a connection error outside the restart window,
or `portal audit verify` failing. Results go to bench/results/faults.json (faults-smoke.json).
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pyotp
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fault_traffic as traffic  # noqa: E402

BIN = Path(sys.executable).parent
NORTH, PROVIDER = "Northside Peacekeepers", "Harbor Behavioral Health"
WORKERS = [("worker1@bench.test", "staff"), ("worker2@bench.test", "staff"), ("lead@bench.test", "supervisor")]
SCHEDULE = [(0.3, "kill connections"), (0.5, "restart instance"), (0.7, "kill connections")]


# -- the scratch database and its seed ---------------------------------------------------------
class Scratch:
    def __init__(self, base_url: str, name: str):
        self.base_url, self.name = base_url, name
        self.url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
        self.admin = create_engine(base_url, isolation_level="AUTOCOMMIT")

    def create(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))

    def kill_connections(self) -> int:
        with self.admin.connect() as conn:
            return conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE datname = :name AND pid <> pg_backend_pid()"),
                                {"name": self.name}).scalar_one()

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def clean_environ() -> dict:
    """This process's environment without any PORTAL_* setting (the portal refuses unknown ones)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}


def portal(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "portal"), *args], env=env, cwd=ROOT, text=True, capture_output=True,
                          timeout=1800)


def seed(env: dict, referrals: int, password: str, totp_secret: str) -> None:
    for args in (("db", "upgrade"), ("demo-data", "--referrals", str(referrals))):
        done = portal(env, *args)
        if done.returncode != 0:
            raise SystemExit(f"portal {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    # three more North team workers, so that different people race for the same referral
    from portal import create_app
    from portal.admin import service as admin
    from portal.auth import mfa
    from portal.db import get_session
    from portal.models import Organization
    outer = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PORTAL_")}  # only ours count
    try:
        app = create_app({k: v for k, v in env.items() if k.startswith("PORTAL_") and not k.startswith("PORTAL_DEMO")})
    finally:
        os.environ.update(outer)
    with app.app_context():
        db = get_session()
        north = db.query(Organization).filter_by(name=NORTH).one()
        for email, role in WORKERS:
            user, _ = admin.create_user(db, north, email, f"Bench {role}", role, password=password)
            mfa.enroll(db, app.extensions["portal.keyring"], user, totp_secret)
        db.commit()
    app.extensions["portal.db"].dispose()


def org_ids(scratch: Scratch) -> tuple[str, str]:
    engine = create_engine(scratch.url)
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT name, id FROM organizations WHERE name IN (:a, :b)"),
                                {"a": NORTH, "b": PROVIDER}).all())
    engine.dispose()
    return str(ids[NORTH]), str(ids[PROVIDER])


def referral_ids(scratch: Scratch) -> set[str]:
    engine = create_engine(scratch.url)
    with engine.connect() as conn:
        ids = {str(r) for (r,) in conn.execute(text("SELECT id FROM referrals"))}
    engine.dispose()
    return ids


# -- the two instances -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    """One gunicorn master (2 sync workers) on a loopback port, logging to files."""

    def __init__(self, port: int, env: dict, logs: Path):
        self.port, self.env, self.logs = port, env, logs
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.logs / f"gunicorn-{self.port}.log"
        with open(log, "a") as out:  # gunicorn's logs and the app's (which go to stderr)
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "--config", str(ROOT / "docker" / "gunicorn.conf.py"),
                 "--bind", f"127.0.0.1:{self.port}", "--workers", "2", "--access-logfile", "-",
                 "--error-logfile", "-", "portal.wsgi:app"],
                cwd=ROOT, env=self.env, stdout=out, stderr=out, start_new_session=True)

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn on {self.port} exited ({self.process.returncode}); see its log")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"gunicorn on {self.port} did not become healthy in {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM: gunicorn finishes the requests in flight, then exits."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# -- the run -----------------------------------------------------------------------------------
def run_traffic(instances, scratch, shared, password, clock, seconds, recorder, creates, accepts):
    """Sign everyone in, run the clients and the fault schedule; returns the fault timeline."""
    ports = [i.port for i in instances]
    people = [("hospital@demo.test", "hospital form", lambda b, rng: traffic.hospital(b, shared, rng, creates, False)),
              ("hospital@demo.test", "hospital api", lambda b, rng: traffic.hospital(b, shared, rng, creates, True)),
              ("cvi@demo.test", "north admin", lambda b, rng: traffic.cvi_worker(b, shared, rng, accepts)),
              *[(email, email.split("@")[0], lambda b, rng: traffic.cvi_worker(b, shared, rng, accepts))
                for email, _ in WORKERS],
              ("city@demo.test", "city", lambda b, rng: traffic.city(b, shared, rng)),
              ("police@demo.test", "police", lambda b, rng: traffic.police(b, shared, rng))]
    clients = []
    for email, name, step in people:
        browser = traffic.Browser(name, ports, recorder)
        traffic.sign_in(browser, email, password, clock)
        clients.append((browser, step))
    started = time.monotonic()
    deadline = started + seconds
    threads = [threading.Thread(target=traffic.run_client, args=(lambda rng, b=b, s=s: s(b, rng), deadline, i),
                                daemon=True) for i, (b, s) in enumerate(clients)]
    for thread in threads:
        thread.start()
    timeline, lock = [], threading.Lock()

    def fault(fraction: float, what: str) -> None:
        time.sleep(max(0.0, started + fraction * seconds - time.monotonic()))
        at = time.monotonic()
        try:
            if what == "kill connections":
                event = {"at": at, "what": what, "killed": scratch.kill_connections()}
            else:
                victim = instances[1]
                victim.stop()
                victim.start()
                victim.wait_healthy()
                event = {"at": at, "what": what, "port": victim.port, "until": time.monotonic() + 1.0}
        except BaseException as error:  # noqa: BLE001 - reported, and the run fails
            event = {"at": at, "what": what, "failed": str(error) or type(error).__name__}
        with lock:
            timeline.append(event)

    faults = [threading.Thread(target=fault, args=each, daemon=True) for each in SCHEDULE]
    for thread in faults:
        thread.start()
    for thread in faults:
        thread.join(timeout=seconds + 180)
    for thread in threads:
        thread.join(timeout=seconds + 120)
    return started, sorted(timeline, key=lambda t: t["at"])


def verify(scratch: Scratch, env: dict, checkpoint: Path, creates: dict, accepts: dict,
           before: set[str]) -> tuple[dict, list[str]]:
    """What the database says about the creates and accepts the clients were told about, and
    about the history that was there before."""
    problems, facts = [], {}
    engine = create_engine(scratch.url)
    with engine.connect() as conn:
        existing = Counter(str(r) for (r,) in conn.execute(text("SELECT id FROM referrals")))
        # a transition into accepted (a handoff records accepted → accepted, reason handed_off)
        into_accepted = "to_status = 'accepted' AND from_status IS DISTINCT FROM 'accepted'"
        doubles = conn.execute(text(f"SELECT referral_id, count(*) FROM referral_events WHERE {into_accepted} "
                                    "GROUP BY referral_id HAVING count(*) > 1")).all()
        accepted_events = Counter(str(r) for (r,) in conn.execute(
            text(f"SELECT referral_id FROM referral_events WHERE {into_accepted}")))
        children = conn.execute(text("SELECT count(*), count(DISTINCT parent_id) FROM referrals "
                                     "WHERE parent_id IS NOT NULL")).one()
    engine.dispose()
    succeeded = {rid for rid, statuses in creates.items() if any(s in (200, 201, 303) for s in statuses)}
    lost = sorted(rid for rid in succeeded if existing[rid] != 1)
    saved_unanswered = sorted(rid for rid in set(creates) - succeeded if existing[rid])
    twice_told = sorted(rid for rid, who in accepts.items() if len(who) > 1)
    unrecorded = sorted(rid for rid in accepts if accepted_events[rid] != 1)
    history_lost = sorted(rid for rid in before if not existing[rid])
    facts.update(history_before=len(before), history_lost=len(history_lost), creates_attempted=len(creates),
                 creates_succeeded=len(succeeded), creates_lost=len(lost), saved_but_answer_lost=len(saved_unanswered),
                 accepts_succeeded=len(accepts),
                 accepted_twice_in_database=len(doubles), accepted_twice_by_responses=len(twice_told),
                 accept_without_its_event=len(unrecorded), handoffs_in_database=children[0],
                 referrals_handed_off=children[1])
    if history_lost:
        problems.append(f"{len(history_lost)} referral(s) of the history before the run are gone: {history_lost[:5]}")
    if lost:
        problems.append(f"{len(lost)} referral(s) created with a success response are missing or doubled: {lost[:5]}")
    if doubles:
        problems.append(f"{len(doubles)} referral(s) accepted more than once: {[str(r) for r, _ in doubles][:5]}")
    if twice_told:
        problems.append(f"{len(twice_told)} referral(s) whose accept succeeded for two clients: {twice_told[:5]}")
    if unrecorded:
        problems.append(f"{len(unrecorded)} accept(s) answered with success but without one accepted event")
    done = portal(env, "audit", "verify", "--checkpoint", str(checkpoint))
    facts["audit_verify"] = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode != 0:
        problems.append("portal audit verify failed: " + (done.stderr.strip() or done.stdout.strip())[-500:])
    return facts, problems


def judge(records, timeline, started) -> tuple[Counter, list[str]]:
    """Counts per (action, outcome); bad responses and connection errors outside the restart."""
    counts = Counter((r.action, r.outcome if r.outcome != "clear" else f"clear {r.status}") for r in records)
    windows = [(t["at"], t["until"], t["port"]) for t in timeline if "until" in t]
    problems = [f"{t['what']} failed: {t['failed']}" for t in timeline if "failed" in t]
    bad = [r for r in records if r.outcome == "bad"]
    if bad:
        problems.append(f"{len(bad)} bad response(s) (5xx without a clear page, or a stack trace): "
                        + ", ".join(f"{r.action} {r.status}" for r in bad[:8]))
    stray = [r for r in records if r.outcome == "connection"
             and not any(start <= r.ended <= end and r.port == port for start, end, port in windows)]
    if stray:
        problems.append(f"{len(stray)} connection error(s) outside the restart window: " + ", ".join(
            f"{r.action} {r.error} on {r.port} at {r.ended - started:.1f} s" for r in stray[:8]))
    return counts, problems


def logged_errors(logs: Path) -> Counter:
    """Exception lines the instances logged (the app logs tracebacks, never personal values)."""
    found = Counter()
    for log in logs.glob("gunicorn-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            match = re.match(r"^([\w.]+(?:Error|Exception|Shutdown)): (.{0,120})", line)
            if match:
                found[f"{match.group(1)}: {match.group(2)}"] += 1
    return found


def print_report(counts, records, timeline, started, facts, problems, seconds) -> None:
    actions = sorted({a for a, _ in counts})
    outcomes = sorted({o for _, o in counts}, key=lambda o: (o != "success", o))
    width = max(len(a) for a in actions) + 2
    print(f"\n{len(records)} responses in {seconds:.0f} s ({len(records) / seconds:.0f}/s) from two instances")
    print("".ljust(width) + "".join(o.rjust(16) for o in outcomes))
    for action in actions:
        print(action.ljust(width) + "".join(str(counts.get((action, o), "")).rjust(16) for o in outcomes))
    print("".ljust(width) + "".join(str(sum(n for (_, oo), n in counts.items() if oo == o)).rjust(16)
                                    for o in outcomes))
    print("\nfaults:")
    for t in timeline:
        extra = f"{t['killed']} connection(s) terminated" if "killed" in t else \
            f"port {t['port']} back after {t['until'] - 1.0 - t['at']:.1f} s" if "until" in t else t["failed"]
        print(f"  {t['at'] - started:6.1f} s  {t['what']}: {extra}")
    print("\nafterwards, from the database:")
    for key, value in facts.items():
        print(f"  {key.replace('_', ' ')}: {value}")
    print("\n" + ("FAILED:\n  " + "\n  ".join(problems) if problems else
                  "OK: nothing lost, nothing accepted twice, every response a success or a clear error"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="~15 s of traffic over a little history (CI)")
    parser.add_argument("--seconds", type=float, help="how long the traffic runs (default 60; 15 with --smoke)")
    parser.add_argument("--referrals", type=int, help="referrals of history to seed (default 500; 20 with --smoke)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database and logs")
    args = parser.parse_args(argv)
    seconds = args.seconds or (15.0 if args.smoke else 60.0)
    history = args.referrals if args.referrals is not None else (20 if args.smoke else 500)
    base = os.environ.get("PORTAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

    from portal.crypto import generate_key_entry
    scratch = Scratch(base, f"portal_faults_{os.getpid()}")
    work = Path(tempfile.mkdtemp(prefix="portal-faults-"))
    password, totp_secret = "bench-" + secrets.token_urlsafe(18), pyotp.random_base32()
    common = {**clean_environ(), "PORTAL_DATABASE_URL": scratch.url, "PORTAL_KEK": generate_key_entry("bench1"),
              "PORTAL_SECRET_KEY": secrets.token_urlsafe(48), "PORTAL_INSTANCE_PATH": str(work / "instance"),
              "PORTAL_LOG_LEVEL": "WARNING"}
    setup_env = {**common, "PORTAL_ENV": "development", "PORTAL_DEMO_PASSWORD": password,
                 "PORTAL_DEMO_TOTP_SECRET": totp_secret}
    instances = []
    print(f"scratch database {scratch.name}; logs in {work}")
    try:
        scratch.create()
        t0 = time.monotonic()
        seed(setup_env, history, password, totp_secret)
        checkpoint = work / "before.checkpoint"
        done = portal(setup_env, "audit", "checkpoint", "--out", str(checkpoint))
        if done.returncode != 0:
            raise SystemExit(f"portal audit checkpoint failed: {done.stderr[-1000:]}")
        print(f"seeded {history} referrals of history in {time.monotonic() - t0:.0f} s")
        for _ in range(2):
            port = free_port()
            instances.append(Instance(port, {**common, "PORTAL_ENV": "production",
                                             "PORTAL_BASE_URL": f"http://127.0.0.1:{port}"}, work))
        for instance in instances:
            instance.start()
        for instance in instances:
            instance.wait_healthy()
        north, provider = org_ids(scratch)
        before = referral_ids(scratch)
        shared, recorder = traffic.Shared(north, provider), traffic.Recorder()
        creates, accepts = {}, {}
        print(f"two instances on ports {', '.join(str(i.port) for i in instances)}; {seconds:.0f} s of traffic")
        started, timeline = run_traffic(instances, scratch, shared, password, traffic.TotpClock(totp_secret),
                                        seconds, recorder, creates, accepts)
        for instance in instances:
            instance.stop()
        facts, problems = verify(scratch, setup_env, checkpoint, creates, accepts, before)
        counts, response_problems = judge(recorder.records, timeline, started)
        problems = response_problems + problems
        print_report(counts, recorder.records, timeline, started, facts, problems, seconds)
        errors = logged_errors(work)
        if errors:
            print("\nexceptions in the instances' logs:")
            for line, n in errors.most_common(10):
                print(f"  {n:4d}x {line}")
        out = ROOT / "bench" / "results" / ("faults-smoke.json" if args.smoke else "faults.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "benchmark": "load and faults", "at": datetime.now(timezone.utc).isoformat(), "seconds": seconds,
            "history_referrals": history, "responses": len(recorder.records),
            "counts": [{"action": a, "outcome": o, "n": n} for (a, o), n in sorted(counts.items())],
            "faults": [{k: (round(v - started, 1) if k in ("at", "until") else v) for k, v in t.items()}
                       for t in timeline],
            "database": facts, "problems": problems, "ok": not problems}, indent=2) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")
        return 1 if problems else 0
    finally:
        for instance in instances:
            instance.stop()
        if args.keep:
            print(f"kept database {scratch.name} and {work}")
        else:
            scratch.drop()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
