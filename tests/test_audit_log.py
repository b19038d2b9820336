"""The audit log: what is recorded, tampering caught against signed checkpoints, proofs, the CLI,
concurrent writers on PostgreSQL, and an application role that may only append."""
import json
import threading
import uuid

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from portal.audit import checkpoint as cp
from portal.audit import witness
from portal.audit.grants import grant_application_role
from portal.audit.log import Draft, append, leaf_bytes
from portal.cli import cli
from portal.db import get_session, utcnow
from portal.models import AuditEvent, AuditHead
from tests.conftest import make_test_app
from tests.referral_world import build_world
from tests.test_referrals import NAME, NOTE, PHONE, act, form, send, sign_in

KEY = cp.generate_private_key()
ORIGIN = "portal.test/audit"


@pytest.fixture
def world(app):
    return build_world(app)


@pytest.fixture
def referral(app, world):
    nurse = sign_in(app, world.nurse)
    data = form(world)
    assert send(nurse, data).status_code in (302, 303)
    return data["referral_id"]


def events(app, **where):
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.seq)
        for column, value in where.items():
            query = query.where(getattr(AuditEvent, column) == value)
        return list(get_session().scalars(query))


def verify(app, witness_text=None):
    with app.app_context():
        return witness.verify(get_session(), KEY.public_key(), witness_text)


def sign(app) -> str:
    with app.app_context():
        db = get_session()
        signed, _ = witness.sign_checkpoint(db, KEY, ORIGIN, utcnow())
        db.commit()
        return signed


def no_personal_values(app):
    for event in events(app):
        encoded = leaf_bytes(event).decode()
        for value in (NAME, PHONE, NOTE, "867-5309"):
            assert value not in encoded


# -- what is recorded ---------------------------------------------------------------------------
def test_reads_and_decisions_are_recorded_with_who_what_and_policies(app, world, referral):
    north = sign_in(app, world.north_staff)
    assert north.get(f"/referrals/{referral}").status_code == 200
    mine = events(app, actor_id=world.north_staff.id, resource_id=referral)
    actions = {(e.action, e.decision) for e in mine}
    assert ("referral.view_status", "allow") in actions  # the gate's decision
    assert {("referral.view_contact", "allow"), ("referral.view_notes", "allow")} <= actions  # what was decrypted
    gate = next(e for e in mine if e.action == "referral.view_status")
    assert gate.policy_ids and gate.organization_id == world.north.id and gate.request_id
    assert all(e.resource_type == "Referral" for e in mine)
    no_personal_values(app)


def test_denials_are_recorded_for_another_team_and_the_police(app, world, referral):
    for user in (world.east_admin, world.police_staff):
        response = sign_in(app, user).get(f"/referrals/{referral}")
        assert response.status_code == 404
        denied = events(app, actor_id=user.id, resource_id=referral)
        assert [(e.action, e.decision) for e in denied] == [("referral.view_status", "deny")]


def test_a_failed_step_still_records_the_decision(app, world, referral):
    north = sign_in(app, world.north_staff)
    assert act(north, referral, "accept").status_code in (302, 303)
    assert act(north, referral, "accept").status_code == 409  # already accepted: rolled back
    accepts = events(app, actor_id=world.north_staff.id, action="referral.accept")
    assert len(accepts) == 2 and {e.decision for e in accepts} == {"allow"}
    assert verify(app).ok


def test_aggregate_views_and_exports_record_table_and_parameters(app, world):
    city = sign_in(app, world.city_staff)
    assert city.get("/dashboards/city?period=month&urgency=urgent").status_code == 200
    viewed = events(app, actor_id=world.city_staff.id, action="dashboard.view")
    detail = json.loads(viewed[-1].detail)
    assert detail["table"] == "all" and detail["filters"]["period"] == "month"
    assert detail["filters"]["urgency"] == "urgent"
    police = sign_in(app, world.police_staff)
    police.get("/api/v1/aggregates/referrals_per_month?through=2026-01")
    police.get("/api/v1/aggregates/no-such-table")
    details = [json.loads(e.detail) for e in events(app, actor_id=world.police_staff.id, action="aggregate.view")]
    assert {"table": "referrals_per_month", "parameters": {"through": "2026-01"}}.items() <= details[0].items()
    assert details[1] == {}  # an undeclared name is not written to the log


def test_an_unchanged_inbox_poll_discloses_and_records_nothing(app, world, referral):
    north = sign_in(app, world.north_staff)
    page = north.get("/referrals/inbox")
    seen = page.get_data(as_text=True).split('id="inbox-seen" name="seen" value="')[1].split('"')[0]
    before = len(events(app))
    poll = north.get(f"/referrals/inbox?seen={seen}", headers={"HX-Request": "true"})
    assert poll.status_code == 204 and poll.get_data() == b""
    assert len(events(app)) == before
    stale = north.get("/referrals/inbox?seen=0", headers={"HX-Request": "true"})
    assert stale.status_code == 200 and NAME in stale.get_data(as_text=True)
    assert len(events(app, action="referral.view_contact", actor_id=world.north_staff.id)) >= 2


# -- verification and tampering -----------------------------------------------------------------
def _log_with_checkpoint(app, world, referral):
    north = sign_in(app, world.north_staff)
    for _ in range(3):
        north.get(f"/referrals/{referral}")
    signed = sign(app)
    assert verify(app, signed).ok
    return signed


def _tamper(app, *statements):
    """Write the database as an attacker with the owner's rights would (trigger bypassed)."""
    engine = create_engine(app.config["PORTAL"].database_url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


TAMPERING = {
    "edit": ["UPDATE audit_events SET action = 'home.view' WHERE seq = 3"],
    "edit-resource": ["UPDATE audit_events SET resource_id = 'elsewhere' WHERE seq = 4"],
    "delete": ["DELETE FROM audit_events WHERE seq = 2",
               "UPDATE audit_events SET seq = seq - 1 WHERE seq > 2",
               "UPDATE audit_head SET size = size - 1"],
    "insert": ["UPDATE audit_events SET seq = seq + 1000000 WHERE seq >= 2",
               "UPDATE audit_events SET seq = seq - 999999 WHERE seq >= 1000000",
               "INSERT INTO audit_events (seq, at, action, resource_type, decision, policy_ids, detail) "
               "VALUES (2, CURRENT_TIMESTAMP, 'home.view', 'Portal', 'allow', '', '{}')",
               "UPDATE audit_head SET size = size + 1"],
    "reorder": ["UPDATE audit_events SET seq = -1 + 0 * seq WHERE seq = 1",
                "UPDATE audit_events SET seq = 1 WHERE seq = 2",
                "UPDATE audit_events SET seq = 2 WHERE seq = -1"],
    "truncate": ["DELETE FROM audit_events WHERE seq >= 5",
                 "UPDATE audit_head SET size = 5"],
}


@pytest.mark.parametrize("attack", sorted(TAMPERING))
def test_verify_catches_tampering_against_an_earlier_checkpoint(app, world, referral, attack):
    signed = _log_with_checkpoint(app, world, referral)
    statements = TAMPERING[attack]
    if attack == "reorder":  # the CHECK seq >= 0 forbids -1; park the row beyond the end instead
        statements = ["UPDATE audit_events SET seq = 999999 WHERE seq = 1",
                      "UPDATE audit_events SET seq = 1 WHERE seq = 2",
                      "UPDATE audit_events SET seq = 2 WHERE seq = 999999"]
    _tamper(app, *statements)
    # Whoever rewrote the rows also rewrites the stored checkpoints: only the witness's copy holds.
    _tamper(app, "DELETE FROM audit_checkpoints")
    result = verify(app, signed)
    assert not result.ok, result.checked
    assert any("witness checkpoint" in p for p in result.problems)


def test_the_log_keeps_growing_and_stays_consistent_with_old_checkpoints(app, world, referral):
    first = _log_with_checkpoint(app, world, referral)
    sign_in(app, world.north_admin).get(f"/referrals/{referral}")
    second = sign(app)
    sign_in(app, world.nurse).get(f"/referrals/{referral}")
    result = verify(app, first)
    assert result.ok and any("consistency proof" in line for line in result.checked)
    assert verify(app, second).ok


def test_a_checkpoint_signed_by_another_key_is_refused(app, world, referral):
    _log_with_checkpoint(app, world, referral)
    with app.app_context():
        forged, _ = witness.sign_checkpoint(get_session(), cp.generate_private_key(), ORIGIN, utcnow())
    result = verify(app, forged)
    assert not result.ok and "not a valid signed checkpoint" in result.problems[-1]


def test_a_gap_or_a_head_that_disagrees_is_reported_without_a_checkpoint(app, world, referral):
    _log_with_checkpoint(app, world, referral)
    _tamper(app, "UPDATE audit_head SET size = size + 1")
    assert "the head says" in verify(app).problems[0]
    _tamper(app, "UPDATE audit_head SET size = size - 1", "DELETE FROM audit_events WHERE seq = 0")
    assert "no event 0" in verify(app).problems[0]


def test_inclusion_proof_checks_with_the_public_key_alone(app, world, referral):
    _log_with_checkpoint(app, world, referral)
    with app.app_context():
        db = get_session()
        proof = witness.prove(db, 2, KEY, ORIGIN, utcnow())
        db.commit()
    checked = witness.check_proof(json.loads(json.dumps(proof)), cp.load_public_key(proof["public_key"]))
    assert checked.size == proof["tree_size"] and json.loads(proof["leaf"])["seq"] == 2
    forged = {**proof, "leaf": proof["leaf"].replace('"allow"', '"deny"')}
    with pytest.raises(Exception, match="root"):
        witness.check_proof(forged, KEY.public_key())


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_checkpoint_verify_and_prove(app, world, referral, tmp_path):
    sign_in(app, world.north_staff).get(f"/referrals/{referral}")
    runner = app.test_cli_runner()
    out = tmp_path / "witness.txt"
    result = runner.invoke(cli, ["audit", "checkpoint", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == result.output and "\n\n— " in result.output
    result = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(out)])
    assert result.exit_code == 0 and "the audit log is intact" in result.output, result.output

    public = tmp_path / "public.pem"
    public.write_text(runner.invoke(cli, ["audit", "public-key"]).output)
    proof = tmp_path / "proof.json"
    result = runner.invoke(cli, ["audit", "prove", "1"])
    assert result.exit_code == 0, result.output
    proof.write_text(result.output)
    result = runner.invoke(cli, ["audit", "check-proof", str(proof), "--public-key", str(public)])
    assert result.exit_code == 0 and "leaf of the signed log" in result.output, result.output
    assert runner.invoke(cli, ["audit", "prove", "999999"]).exit_code == 2

    _tamper(app, "UPDATE audit_events SET decision = 'deny' WHERE seq = 0")
    result = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(out)])
    assert result.exit_code == 1 and "does not extend it" in result.output


def test_cli_mails_the_checkpoint_to_the_witness(app, database_url, tmp_path, smtp):
    controller, inbox = smtp
    mail_app = make_test_app(database_url, tmp_path, PORTAL_SMTP_HOST="127.0.0.1",
                             PORTAL_SMTP_PORT=str(controller.port), PORTAL_AUDIT_WITNESS_EMAIL="compliance@city.test")
    result = mail_app.test_cli_runner().invoke(cli, ["audit", "checkpoint", "--mail"])
    assert result.exit_code == 0, result.output
    ((recipients, message),) = inbox.messages
    assert recipients == ["compliance@city.test"] and "audit checkpoint" in message
    assert result.output.splitlines()[2] in message  # the signed root travels in the mail
    mail_app.extensions["portal.db"].dispose()


# -- PostgreSQL: concurrent writers, append-only ------------------------------------------------
@pytest.mark.postgres_only
def test_concurrent_writers_keep_one_log(app):
    database = app.extensions["portal.db"]
    writers, each = 8, 25
    barrier = threading.Barrier(writers)
    errors = []

    def write(n):
        try:
            barrier.wait()
            for i in range(each):
                with database.sessions() as db:
                    append(db, [Draft(action="home.view", resource_type="Portal", resource_id=None,
                                      decision="allow", detail={"writer": n, "i": i})], utcnow())
                    db.commit()
        except Exception as error:  # noqa: BLE001 — reported below with the writer
            errors.append((n, error))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with app.app_context():
        db = get_session()
        seqs = db.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        assert seqs == list(range(writers * each))  # no gap, no duplicate
        assert db.scalar(select(AuditHead.size)) == writers * each
    assert verify(app).ok


@pytest.mark.postgres_only
def test_the_application_role_may_only_append(app):
    with app.app_context():
        db = get_session()
        append(db, [Draft(action="home.view", resource_type="Portal", resource_id=None, decision="allow")], utcnow())
        db.commit()
    role = f"portal_app_{uuid.uuid4().hex[:8]}"
    url = make_url(app.config["PORTAL"].database_url)
    owner = create_engine(url)
    with owner.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        grant_application_role(conn, role)
    as_app = create_engine(url.set(username=role))
    try:
        with as_app.connect() as conn:
            with conn.begin():
                conn.execute(text("UPDATE audit_head SET size = size + 1"))
                conn.execute(text("INSERT INTO audit_events (seq, at, action, resource_type, decision, policy_ids, "
                                  "detail) VALUES (1, CURRENT_TIMESTAMP, 'home.view', 'Portal', 'allow', '', '{}')"))
            for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events",
                              "TRUNCATE audit_events", "UPDATE releases SET k = 1"):
                with pytest.raises(DBAPIError, match="permission denied"):
                    with conn.begin():
                        conn.execute(text(statement))
            assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar() == 2
        # The owner is refused too: the trigger, not only the grant.
        with pytest.raises(DBAPIError, match="append-only"):
            with owner.begin() as conn:
                conn.execute(text("DELETE FROM audit_events"))
    finally:
        as_app.dispose()
        with owner.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        owner.dispose()
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(AuditEvent)) == 2


def test_operators_commands_are_recorded_as_system_events(app, world):
    runner = app.test_cli_runner()
    assert runner.invoke(cli, ["retention", "run"]).exit_code == 0
    assert runner.invoke(cli, ["keys", "rotate"]).exit_code == 0
    recorded = {e.action: e for e in events(app) if e.action.startswith("system.")}
    assert set(recorded) == {"system.retention_run", "system.keys_rotated"}
    assert recorded["system.retention_run"].actor_id is None
    assert json.loads(recorded["system.retention_run"].detail) == {"expired_consents": 0, "purged_referrals": 0,
                                                                   "pruned_links": 0, "pruned_throttles": 0}
    assert verify(app).ok


def test_sign_in_events_are_recorded_without_the_address(app, world, client):
    from tests.conftest import csrf_token, login
    token = csrf_token(client)
    assert client.post("/login", data={"email": "nobody@example.test", "password": "wrong password x",
                                       "csrf_token": token}).status_code == 401
    login(client, world.north_staff.email)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    recorded = [(e.action, e.decision, e.actor_id) for e in events(app) if e.action.startswith("auth.")]
    assert ("auth.login_failed", "deny", None) in recorded
    assert ("auth.login", "allow", world.north_staff.id) in recorded
    assert ("auth.logout", "allow", world.north_staff.id) in recorded
    login_event = next(e for e in events(app, action="auth.login"))
    assert json.loads(login_event.detail) == {"second_factor": True, "via": "auth.login_code"}
    for event in events(app):
        assert "nobody@example.test" not in leaf_bytes(event).decode()
        assert world.north_staff.email not in leaf_bytes(event).decode()
