"""Security scans in CI: bandit over portal/, and sqlmap against the running portal.

bandit: no finding of medium or high severity (at any confidence) may remain in portal/, and
every `# nosec` names its rule and says why. sqlmap: the login form and every query parameter of
the JSON API (and the city dashboard's filters) are attacked at level 1 / risk 1 on SQLite and
PostgreSQL, and must yield no injection. Each scan also proves that it really tested what it was
pointed at: every parameter is named as tested, enough requests were made, the session was
accepted (no 401, no detour through /login) and, for the login form, the CSRF token was accepted
on every request. A planted injection in a tiny throwaway app proves the scan can fail.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sysconfig
import threading
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask, request
from sqlalchemy import select
from werkzeug.serving import WSGIRequestHandler, make_server

from portal.db import get_session, utcnow
from portal.demo import load_demo_data
from portal.demo_history import load_demo_referrals
from portal.models import User
from portal.releases.publish import publish_due
from tests.conftest import PASSWORD, login, make_test_app

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(sysconfig.get_path("scripts"))
SQLMAP_SECONDS = 120  # sqlmap's own --time-limit per scan; the subprocess gets twice that


# -- bandit ------------------------------------------------------------------------------------
def _bandit() -> dict:
    result = subprocess.run([str(SCRIPTS / "bandit"), "-c", "pyproject.toml", "-r", "portal", "-f", "json", "-q"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip(), f"bandit wrote no report (exit {result.returncode}): {result.stderr}"
    return json.loads(result.stdout)


def test_bandit_finds_nothing_of_medium_or_high_severity():
    """bandit over portal/: no medium or high severity finding, whatever its confidence; every file parsed."""
    report = _bandit()
    assert report["errors"] == [], f"bandit could not scan: {report['errors']}"
    scanned = [name for name in report["metrics"] if name != "_totals"]
    # an empty or misdirected scan would pass vacuously
    assert len(scanned) >= 40 and report["metrics"]["_totals"]["loc"] >= 3000, scanned
    serious = [f"{r['filename']}:{r['line_number']} {r['test_id']} ({r['issue_severity']}/{r['issue_confidence']}) "
               f"{r['issue_text']}" for r in report["results"] if r["issue_severity"] in ("MEDIUM", "HIGH")]
    assert serious == [], "bandit findings to fix, or to mark `# nosec BXXX -- reason` if false:\n" + "\n".join(serious)


NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)", re.IGNORECASE)
NOSEC_WELL_FORMED = re.compile(r"^\s+B\d{3}(?:\s*,\s*B\d{3})*\s*(?:—|--|-|:)\s*\S.{9,}$")


def _nosec_comments() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted((ROOT / "portal").rglob("*.py")):
        with open(path, "rb") as source:
            for token in tokenize.tokenize(source.readline):
                if token.type == tokenize.COMMENT and (match := NOSEC.search(token.string)):
                    found.append((str(path.relative_to(ROOT)), token.start[0], match.group("rest")))
    return found


def test_every_nosec_names_its_rule_and_a_reason():
    """A bare `# nosec` silences every rule on its line: each one must name the rule and say why."""
    bad = [f"{path}:{line}: # nosec{rest}" for path, line, rest in _nosec_comments()
           if not NOSEC_WELL_FORMED.match(rest)]
    assert bad == [], "write `# nosec B608 — why this is not an injection` (rule id, then a reason):\n" + "\n".join(bad)


def test_the_nosec_rule_itself_rejects_bare_and_reasonless_markers():
    """The format check above must be able to fail."""
    for rest in ("", " B608", " because", " B6 — reason enough", " B608 —"):
        assert not NOSEC_WELL_FORMED.match(rest), rest
    for rest in (" B608 — the table name comes from the model metadata", " B105, B106 -- test fixture names only"):
        assert NOSEC_WELL_FORMED.match(rest), rest


# -- sqlmap: running it and reading what it did ---------------------------------------------------
@dataclass
class Scan:
    output: str  # sqlmap's console output
    traffic: str  # every request and response (-t)
    found: str  # the injection points sqlmap logged (empty when none)
    returncode: int

    TESTED = re.compile(r"testing for SQL injection on (\w+) parameter '([^']+)'")
    CLEAN = re.compile(r"(\w+) parameter '([^']+)' does not seem to be injectable")

    @property
    def tested(self) -> set[tuple[str, str]]:
        return set(self.TESTED.findall(self.output))

    @property
    def clean(self) -> set[tuple[str, str]]:
        return set(self.CLEAN.findall(self.output))

    @property
    def requests(self) -> int:
        return self.traffic.count("HTTP request [#")

    @property
    def http_errors(self) -> dict[int, int]:
        """sqlmap's closing summary, e.g. `401 (Unauthorized) - 184 times, 400 (Bad Request) - 8 times`."""
        return {int(code): int(times) for code, times in re.findall(r"\b(\d{3}) \([^)]*\) - (\d+) times", self.output)}

    @property
    def injectable(self) -> bool:
        return bool(self.found.strip()) or "identified the following injection point" in self.output \
            or re.search(r"parameter '[^']+' (?:is|appears to be) '", self.output) is not None

    def summary(self) -> str:
        return "\n".join(line for line in self.output.splitlines() if "testing '" not in line)[-6000:]


def run_sqlmap(url: str, tmp_path: Path, *args: str) -> Scan:
    """sqlmap, non-interactive, level 1 / risk 1, every technique, its files under tmp_path."""
    out = tmp_path / "sqlmap"
    out.mkdir(parents=True, exist_ok=True)
    traffic = tmp_path / "traffic.txt"
    command = [str(SCRIPTS / "sqlmap"), "-u", url, "--batch", "--level", "1", "--risk", "1", "--flush-session",
               "--disable-coloring", "--output-dir", str(out), "-t", str(traffic), "--time-limit", str(SQLMAP_SECONDS),
               # The portal answers 400 to an unknown parameter by design (fixed catalogs); sqlmap's WAF probe
               # adds one and would take that for a WAF and switch to tamper scripts. There is no WAF here.
               "--skip-waf", *args]
    # HOME: sqlmap keeps history and caches under the home directory; keep them in tmp_path
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=2 * SQLMAP_SECONDS, env=env)
    found = "".join(p.read_text(errors="replace") for p in out.glob("*/log"))
    return Scan(result.stdout + result.stderr, traffic.read_text(errors="replace") if traffic.exists() else "",
                found, result.returncode)


def assert_no_injection(scan: Scan, expected: set[tuple[str, str]], signed_in: bool = True) -> None:
    """No injection, and proof that sqlmap tested every expected parameter for real."""
    report = scan.summary()
    assert not scan.injectable, f"sqlmap found an injection:\n{scan.found}\n{report}"
    assert scan.returncode == 0, report
    assert expected <= scan.tested, f"not tested: {expected - scan.tested}\n{report}"
    assert expected <= scan.clean, f"no verdict for: {expected - scan.clean}\n{report}"
    assert "all tested parameters do not appear to be injectable" in scan.output, report
    assert "time limit" not in scan.output.lower(), f"sqlmap ran out of time\n{report}"
    assert scan.requests >= 40 * len(expected), f"only {scan.requests} requests\n{report}"
    errors = scan.http_errors
    assert 429 not in errors, ("rate limited: the scan's app must lift the limits (RATELIMIT_ENABLED=False, or the "
                               f"portal's own limit setting), or the scan tests nothing\n{report}")
    assert 500 not in errors, f"the portal failed on a scan payload\n{report}"
    if signed_in:
        # a lost session would send sqlmap to the login page, and it would happily scan that instead
        assert 401 not in errors and "not authorized" not in scan.output, report
        assert "/login" not in "".join(re.findall(r"^(?:URI|Location): .*$", scan.traffic, re.M)), report


# -- the portal on a real socket, with data --------------------------------------------------------
class QuietHandler(WSGIRequestHandler):
    """No access-log line per request: a scan makes thousands, and they would bury a failure."""

    def log_request(self, *args, **kwargs):
        pass


def serve(app) -> tuple[str, Callable[[], None]]:
    """Serve `app` on 127.0.0.1 (a free port) in a thread; return its base URL and a stop function."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="scan-target", daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    return f"http://127.0.0.1:{server.server_port}", stop


@dataclass
class Target:
    base: str
    app: Flask

    def cookie(self, email: str) -> str:
        """A signed-in session of this account, as the Cookie header value sqlmap should send."""
        client = self.app.test_client()
        response = login(client, email)  # through the second factor, where the account has or needs one
        with client.session_transaction() as session:
            assert "_user_id" in session, f"{email} could not sign in ({response.status_code})"
        name = self.app.config["SESSION_COOKIE_NAME"]
        return f"{name}={client.get_cookie(name).value}"


@pytest.fixture
def target(database_url, tmp_path, app):
    """The portal on 127.0.0.1 (a free port): the demo partners, 48 referrals over two years, and
    the releases published from them.

    `app` (tests/conftest.py) empties the tables afterwards; this one serves a second app on the
    same database whose limits are lifted: a scan sends hundreds of requests from one address.
    """
    served = make_test_app(database_url, tmp_path, RATELIMIT_ENABLED=False)
    with served.app_context():
        db = get_session()
        load_demo_data(db, PASSWORD)
        db.commit()
        load_demo_referrals(db, served.extensions["portal.keyring"], served.extensions["portal.pdp"], 48, seed=7)
        assert publish_due(db, served.extensions["portal.catalog"], utcnow()), "no release was published"
        db.commit()
    base, stop = serve(served)
    try:
        yield Target(base, served)
    finally:
        stop()
        served.extensions["portal.db"].dispose()


def _failed_logins(app, email: str) -> int:
    with app.app_context():
        return get_session().scalar(select(User.failed_login_count).where(User.email == email))


# -- sqlmap against the portal -----------------------------------------------------------------
def test_login_form_is_not_injectable(target, tmp_path):
    """The login form's e-mail and password (and ?next=), each request with a fresh, valid CSRF token.

    The baseline is a failed login, so a payload that signed in would change the page (a 302 to
    the second factor or home); the 401s show that the requests passed CSRF and reached the
    sign-in service.
    """
    login_url = f"{target.base}/login"
    scan = run_sqlmap(f"{login_url}?next=/referrals/inbox", tmp_path,
                      "--data", "email=cvi%40demo.test&password=not-the-password&csrf_token=x",
                      "--csrf-token=csrf_token", f"--csrf-url={login_url}", "-p", "email,password,next",
                      "--ignore-code=401")  # a failed login answers 401; that is the page under test
    assert_no_injection(scan, {("POST", "email"), ("POST", "password"), ("GET", "next")}, signed_in=False)
    assert "The form expired or did not come from this site" not in scan.traffic, "a CSRF token was refused"
    assert "302 FOUND" not in scan.traffic, "a payload signed in"
    # 401 is the wrong-password page: every such request passed CSRF and reached the sign-in service
    assert scan.http_errors.get(401, 0) >= 40, scan.summary()
    # the password was really checked (until the per-address lockout refuses without checking; the
    # password never reaches SQL, only the e-mail does, and each e-mail payload is its own address)
    assert _failed_logins(target.app, "cvi@demo.test") >= 5


def test_referral_list_api_is_not_injectable(target, tmp_path):
    """GET /api/v1/referrals: box, status, limit and offset, as a signed-in CVI worker with an inbox."""
    scan = run_sqlmap(f"{target.base}/api/v1/referrals?box=inbox&status=accepted&limit=5&offset=0", tmp_path,
                      "--cookie", target.cookie("cvi@demo.test"), "--drop-set-cookie")
    assert_no_injection(scan, {("GET", p) for p in ("box", "status", "limit", "offset")})


def test_sent_list_api_is_not_injectable(target, tmp_path):
    """GET /api/v1/referrals?box=sent: box, limit and offset, as the hospital that sent them."""
    scan = run_sqlmap(f"{target.base}/api/v1/referrals?box=sent&limit=5&offset=1", tmp_path,
                      "--cookie", target.cookie("hospital@demo.test"), "--drop-set-cookie")
    assert_no_injection(scan, {("GET", p) for p in ("box", "limit", "offset")})


@pytest.mark.parametrize("email", ["police@demo.test", "city@demo.test"])
def test_aggregates_api_is_not_injectable(target, tmp_path, email):
    """GET /api/v1/aggregates/<table>?release=&through=: the table name and both parameters."""
    # With a `*` marker sqlmap tests only marked places: the path segment and both values are marked.
    scan = run_sqlmap(f"{target.base}/api/v1/aggregates/referrals_per_month*?release=1*&through=2030-01*", tmp_path,
                      "--cookie", target.cookie(email), "--drop-set-cookie")
    assert_no_injection(scan, {("URI", "#1*"), ("URI", "#2*"), ("URI", "#3*")})


def test_city_dashboard_filters_are_not_injectable(target, tmp_path):
    """GET /dashboards/city: every filter, which all reach the GROUP BY queries."""
    with target.app.app_context():
        org_id = get_session().scalar(select(User.organization_id).where(User.email == "cvi@demo.test"))
    query = (f"from=2025-01-01&to=2026-06-30&period=month&zone=N1&urgency=urgent&team={org_id}"
             f"&sender=")
    scan = run_sqlmap(f"{target.base}/dashboards/city?{query}", tmp_path,
                      "--cookie", target.cookie("city@demo.test"), "--drop-set-cookie")
    assert_no_injection(scan, {("GET", p) for p in ("from", "to", "period", "zone", "urgency", "team", "sender")})


def test_referral_form_receiver_choices_are_not_injectable(target, tmp_path):
    """GET /referrals/new/receivers?zone=&receiver_org_id=: the htmx partial of the referral form."""
    scan = run_sqlmap(f"{target.base}/referrals/new/receivers?zone=N1&receiver_org_id=x", tmp_path,
                      "--cookie", target.cookie("hospital@demo.test"), "--drop-set-cookie")
    assert_no_injection(scan, {("GET", "zone"), ("GET", "receiver_org_id")})


# -- the scan can fail ---------------------------------------------------------------------------
def _planted_injection_app() -> Flask:
    """A throwaway app with a textbook injection (string-built SQL); never part of the portal."""
    planted = Flask("planted")
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    connection.execute("CREATE TABLE t (name TEXT, n INTEGER)")
    connection.executemany("INSERT INTO t VALUES (?, ?)", [("a", 1), ("b", 2)])
    lock = threading.Lock()

    @planted.get("/find")
    def find():
        with lock:
            try:
                rows = connection.execute(f"SELECT n FROM t WHERE name = '{request.args.get('q', '')}'").fetchall()
            except sqlite3.Error:
                return "error", 500
        return {"rows": rows}

    return planted


def test_the_scan_reports_a_planted_injection(tmp_path):
    """The same options and the same reading of the output flag a real injection (boolean-based only, for speed)."""
    base, stop = serve(_planted_injection_app())
    try:
        scan = run_sqlmap(f"{base}/find?q=a&n=1", tmp_path, "--technique=B")
    finally:
        stop()
    assert scan.injectable, scan.summary()
    assert "Parameter: q (GET)" in scan.found
    with pytest.raises(AssertionError, match="found an injection"):
        assert_no_injection(scan, {("GET", "q")}, signed_in=False)
