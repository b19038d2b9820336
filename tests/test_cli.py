"""The `portal` command: run as the operator would, in a subprocess, on a fresh database."""
import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, select, text

from portal.config import ROOT
from tests.conftest import KEK, SECRET


@pytest.fixture
def run(tmp_path):
    """Run `portal ...` against a fresh SQLite file, with only the settings given here."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    base_env.update(PORTAL_ENV="development", PORTAL_DATABASE_URL=url, PORTAL_SECRET_KEY=SECRET,
                    PORTAL_INSTANCE_PATH=str(tmp_path / "instance"), PORTAL_KEK=KEK)

    def _run(*args, stdin="", **env):
        result = subprocess.run([sys.executable, "-m", "portal.cli", *args], input=stdin, capture_output=True,
                                text=True, env={**base_env, **env}, cwd=ROOT, timeout=120)
        return result

    _run.url = url
    return _run


def _emails(url):
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [r[0] for r in conn.execute(text("SELECT email FROM users ORDER BY email"))]
    engine.dispose()
    return rows


def test_upgrade_orgs_users_and_demo_data(run):
    """The operator's path: migrate, create an organization and a user (password from stdin), demo data twice."""
    assert run("db", "upgrade").returncode == 0
    created = run("orgs", "create", "--name", "Southside Outreach", "--kind", "cvi_team")
    assert created.returncode == 0, created.stderr
    user = run("users", "create", "--email", "Lead@South.test", "--name", "Lead", "--org", "Southside Outreach",
               "--role", "org_admin", stdin="a long enough password\n")
    assert user.returncode == 0, user.stderr
    assert "a long enough password" not in user.stdout + user.stderr
    assert _emails(run.url) == ["lead@south.test"]

    first = run("demo-data", PORTAL_DEMO_PASSWORD="demo password 123")
    assert first.returncode == 0 and "created 7 demo account(s)" in first.stdout
    second = run("demo-data")
    assert second.returncode == 0 and "already present" in second.stdout
    assert len(_emails(run.url)) == 8


def test_demo_password_is_generated_and_printed_once(run):
    run("db", "upgrade")
    result = run("demo-data")
    assert "their password (shown once):" in result.stdout
    password = result.stdout.split("(shown once):")[1].strip()
    engine = create_engine(run.url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM users WHERE email='police@demo.test'")).scalar()
    engine.dispose()
    from portal.auth.passwords import verify_password
    assert verify_password(stored, password)


def test_users_create_refuses_password_as_argument_and_bad_input(run):
    run("db", "upgrade")
    run("orgs", "create", "--name", "Org", "--kind", "hospital_program")
    assert run("users", "create", "--email", "a@b.test", "--name", "A", "--org", "Org").returncode == 2  # no stdin
    short = run("users", "create", "--email", "a@b.test", "--name", "A", "--org", "Org", stdin="short\n")
    assert short.returncode == 2 and "at least 12" in short.stderr
    missing = run("users", "create", "--email", "a@b.test", "--name", "A", "--org", "Nope", stdin="x" * 20 + "\n")
    assert missing.returncode == 2 and "no organization" in missing.stderr
    assert run("orgs", "create", "--name", "Org", "--kind", "hospital_program").returncode == 2
    assert _emails(run.url) == []


def test_demo_data_is_refused_in_production(run):
    run("db", "upgrade")
    result = run("demo-data", PORTAL_ENV="production")
    assert result.returncode == 2 and "development only" in result.stderr
    assert _emails(run.url) == []


def test_policy_check_passes_and_fails_with_file_and_line(run, tmp_path):
    ok = run("policy", "check")
    assert ok.returncode == 0 and "valid against the schema" in ok.stdout
    bad = tmp_path / "policies"
    bad.mkdir()
    (bad / "schema.cedarschema").write_text((ROOT / "policies" / "schema.cedarschema").read_text())
    (bad / "broken.cedar").write_text('@id("a")\npermit (principal, action, resource);\n@id("b")\nforbid (principal,\n')
    result = run("policy", "check", PORTAL_POLICY_DIR=str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith("portal: broken.cedar:3:") and "Traceback" not in result.stderr


def test_demo_referral_history_is_made_through_the_services_and_rerun_safely(run):
    """`demo-data --referrals N` makes N encrypted referrals with history; a re-run adds none."""
    run("db", "upgrade")
    first = run("demo-data", "--referrals", "40", "--seed", "7", PORTAL_DEMO_PASSWORD="demo password 123")
    assert first.returncode == 0 and "40 referral(s) created" in first.stdout, first.stderr
    second = run("demo-data", "--referrals", "40", "--seed", "7")
    assert "0 referral(s) created (40 already present)" in second.stdout
    engine = create_engine(run.url)
    with engine.connect() as conn:
        statuses = {r[0] for r in conn.execute(text("SELECT DISTINCT status FROM referrals"))}
        keys = conn.execute(text("SELECT count(*) FROM data_keys")).scalar()
        events = conn.execute(text("SELECT count(*) FROM referral_events")).scalar()
        raw_names = conn.execute(text("SELECT count(*) FROM referrals WHERE personal_enc IS NOT NULL")).scalar()
    engine.dispose()
    assert {"completed", "declined"} <= statuses and len(statuses) >= 4
    assert events > 40 and keys > 0 and raw_names > 0


def test_releases_from_5000_referrals_pass_the_audit_and_a_tampered_one_fails(run):
    """The differencing checker on real output: every police table built from 5,000 referrals of
    history passes; publishing one complementary cell (primary suppression only) is caught."""
    import json
    run("db", "upgrade")
    made = run("demo-data", "--referrals", "5000", "--seed", "11", PORTAL_DEMO_PASSWORD="demo password 123")
    assert made.returncode == 0 and "release(s) published from that history" in made.stdout, made.stderr
    audited = run("releases", "audit")
    assert audited.returncode == 0 and "no way in" in audited.stdout, audited.stderr
    engine = create_engine(run.url)
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT number, statistics FROM releases ORDER BY number")).all()
        target = None
        for number, stats in rows:
            stats = json.loads(stats) if isinstance(stats, str) else stats
            for cell in (s for s in stats if s["value"] is None and not s["key"].endswith("__total__")):
                line = cell["key"].rsplit("|", 1)[0] + "|"
                total = next((s for s in stats if s["key"] == line + "__total__"), None)
                mates = [s for s in stats if s["key"].startswith(line) and s is not cell and s["value"] is None]
                if total and total["value"] is not None and mates and all(m is not total for m in mates):
                    for mate in mates:  # primary suppression only: the complements are published
                        mate["value"] = 0
                    target = (number, stats)
                    break
            if target:
                break
        assert target, "the history should need complementary suppression somewhere"
        conn.execute(text("UPDATE releases SET statistics = :s WHERE number = :n"),
                     {"s": json.dumps(target[1]), "n": target[0]})
    engine.dispose()
    tampered = run("releases", "audit")
    assert tampered.returncode == 1 and "can be narrowed" in tampered.stderr
