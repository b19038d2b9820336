"""Sending a referral through POST /api/v1/referrals: a fixed, small number of SQL statements,
and a 201 that says exactly what the sender reads afterwards.

Creation is the busiest write (bench/README.md item d). The service writes its rows at once and
the API answers from the objects it wrote, so nothing is read back after the INSERTs: the
statements below are counted as in tests/test_query_counts.py (the app engine's
before_cursor_execute), after a first creation has warmed every per-process cache.
"""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.admin import service as admin_service
from portal.audit.log import current_tree
from portal.db import get_session
from portal.models import AuditEvent, Consent, DataKey, Notification, Referral, ReferralEvent, User
from portal.referrals import service, vault
from portal.referrals.inputs import parse_referral
from tests.conftest import PASSWORD, csrf_token, login
from tests.referral_world import build_world
from tests.test_query_counts import _difference, counting

API = "/api/v1"
# Per creation on PostgreSQL: the session's read, one lookup (the organizations with the zone), one
# INSERT per table (consent, its recipients, referral, services, event, data key), one of the
# team's mails (INSERT … SELECT) and the audit append (two). SQLite reads the team's ids before
# their mails (it cannot make ids) and begins its transactions with BEGIN IMMEDIATE (portal/db.py).
BUDGET = {"postgresql": 11, "sqlite": 13}
PERSON = {"preferred_name": "Dee", "phone": "(555) 201-0042", "best_time": "evenings", "language": "English",
          "safe_to_text": True, "safe_voicemail": False, "code_word": None}


@pytest.fixture
def world(app):
    return build_world(app)


class Sender:
    """The hospital nurse, signed in through the real forms, speaking JSON with the CSRF header."""

    def __init__(self, app, user: User):
        self.client = app.test_client()
        assert login(self.client, user.email).status_code == 302
        self.token = csrf_token(self.client, "/")

    def send(self, body: dict, headers: dict | None = None):
        return self.client.post(f"{API}/referrals", json=body,
                                headers={"X-CSRFToken": self.token, **(headers or {})})


def body(world, recipients=None, **fields) -> dict:
    """The bench's shape of referral (bench/run.py referral_body), to the North team."""
    recipients = [world.north] if recipients is None else recipients
    return {"receiver_org_id": str(world.north.id), "person": dict(PERSON), "age_band": "18_24", "zone": "N1",
            "reason": "gunshot_wound", "services": ["intensive_mentoring", "care_management"], "urgency": "routine",
            "note": "Prefers a call after school hours.",
            "consent": {"method": "verbal", "recipient_org_ids": [str(o.id) for o in recipients],
                        "data_categories": ["contact", "note"]}, **fields}


def statements_for_one(app, sender: Sender, data: dict) -> list[str]:
    with counting(app) as statements:
        response = sender.send(data)
    assert response.status_code == 201, response.get_data(as_text=True)
    return statements


def test_a_creation_runs_a_fixed_budget_of_statements_and_reads_nothing_back(app, world):
    """At most BUDGET statements however large the team and the consent; after the first INSERT
    nothing is SELECTed from the referral's tables (no reload for the answer)."""
    sender = Sender(app, world.nurse)
    assert sender.send(body(world)).status_code == 201  # warm-up: policies, caches, prepared plans
    small = statements_for_one(app, sender, body(world))
    dialect = app.extensions["portal.db"].engine.dialect.name
    assert len(small) <= BUDGET[dialect], "\n".join(small)
    first_insert = next(i for i, s in enumerate(small) if s.lstrip().upper().startswith("INSERT"))
    read_back = [s for s in small[first_insert:] if s.lstrip().upper().startswith("SELECT")
                 and any(f"FROM {t}" in s for t in ("referrals", "referral_events", "referral_services",
                                                    "consents", "data_keys", "organizations"))]
    assert read_back == []

    with app.app_context():  # a larger team and a consent that names two more organizations
        db = get_session()
        north = db.get(type(world.north), world.north.id)
        for i in range(6):
            admin_service.create_user(db, north, f"extra-{i}@example.test", f"Extra {i}", "staff", password=PASSWORD)
        db.commit()
    large = statements_for_one(app, sender, body(world, recipients=[world.north, world.provider, world.east]))
    assert len(large) == len(small), _difference(small, large, "3 members, 1 recipient", "9 members, 3 recipients")


def test_the_201_is_what_the_sender_reads_afterwards(app, world):
    """The answer built from the objects the service wrote equals a later GET of the stored
    referral by the same user, field by field; a repeat with the same Idempotency-Key too."""
    sender = Sender(app, world.nurse)
    key = str(uuid.uuid4())
    sent = sender.send(body(world, urgency="urgent"), {"Idempotency-Key": key})
    assert sent.status_code == 201
    assert sent.headers["Location"].endswith(f"{API}/referrals/{key}")
    created = sent.get_json()
    stored = sender.client.get(f"{API}/referrals/{key}")
    assert stored.status_code == 200
    assert created == stored.get_json()
    assert created["status"] == "sent" and [e["to"] for e in created["events"]] == ["sent"]
    assert not {"person", "note", "contact_attempts", "assigned_to"} & created.keys()  # the sender's view
    again = sender.send(body(world, urgency="urgent"), {"Idempotency-Key": key})
    assert again.status_code == 200 and again.get_json() == created


def test_rows_mail_and_audit_of_one_creation(app, world):
    """One referral writes its consent (naming its recipients), two services, the 'sent' event,
    a data key that opens the sealed person and note, one mail for each joined, active member of
    the team (not the deactivated one, not the one invited who never joined), and one audit event
    (the gate's decision); the log stays whole."""
    with app.app_context():
        db = get_session()
        north = db.get(type(world.north), world.north.id)
        gone = admin_service.create_user(db, north, "gone@example.test", "Gone", "staff", password=PASSWORD)[0]
        gone.active = False
        invited = admin_service.create_user(db, north, "invited@example.test", "Invited", "staff")[0]
        db.commit()
        gone_id, invited_id = gone.id, invited.id
    sender = Sender(app, world.nurse)
    with app.app_context():
        audit_before = get_session().scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
    response = sender.send(body(world, recipients=[world.north, world.provider]))
    assert response.status_code == 201
    referral_id = uuid.UUID(response.get_json()["id"])
    with app.app_context():
        db = get_session()
        referral = db.get(Referral, referral_id)
        assert (referral.status, referral.version, referral.retaliation_risk) == ("sent", 1, False)
        assert referral.services == ["care_management", "intensive_mentoring"]
        consent = db.get(Consent, referral.consent_id)
        assert {o.id for o in consent.recipients} == {world.north.id, world.provider.id}
        assert consent.categories == {"contact", "note"} and consent.purpose == "violence_intervention_services"
        events = list(db.scalars(select(ReferralEvent).where(ReferralEvent.referral_id == referral_id)))
        assert [(e.from_status, e.to_status, e.actor_id) for e in events] == [(None, "sent", world.nurse.id)]
        assert db.get(DataKey, referral_id) is not None
        dek = vault.data_key(db, app.extensions["portal.keyring"], referral)
        assert vault.open_person(dek, referral)["phone"] == "+15552010042"
        assert vault.open_note(dek, referral) == "Prefers a call after school hours."
        mails = list(db.scalars(select(Notification).where(Notification.referral_id == referral_id)))
        assert sorted(m.recipient_id for m in mails) == sorted(
            u.id for u in (world.north_admin, world.north_staff, world.north_staff2))
        assert {(m.kind, m.status, m.attempts, m.sent_at) for m in mails} == {("new_referral", "sent", 0, None)}
        assert len({m.id for m in mails}) == len(mails) and all(m.id.version == 4 for m in mails)
        assert not {gone_id, invited_id} & {m.recipient_id for m in mails}
        recorded = list(db.scalars(select(AuditEvent).where(AuditEvent.seq > (audit_before or -1))
                                   .order_by(AuditEvent.seq)))
        assert [(e.action, e.decision, e.actor_id) for e in recorded] == [("referral.create", "allow", world.nurse.id)]
        current_tree(db)  # rows and head agree, seq without gaps


def test_a_refused_creation_writes_nothing(app, world):
    """A receiver the consent does not name, or an unknown zone, answers 422 and leaves no row."""
    sender = Sender(app, world.nurse)
    for data, field in ((body(world, recipients=[world.provider]), "consent.recipient_org_ids"),
                        (body(world, zone="NOWHERE"), "zone")):
        response = sender.send(data)
        assert response.status_code == 422 and field in response.get_json()["errors"]
    with app.app_context():
        db = get_session()
        for model in (Referral, Consent, Notification, ReferralEvent, DataKey):
            assert db.scalar(select(model).limit(1)) is None, model.__name__


def test_a_repeated_id_fails_in_the_database_and_leaves_only_the_first(app, world):
    """Two creations under one id (an Idempotency-Key racing itself): the second INSERT fails on
    the primary key before any of its objects joins the session, and its rollback leaves the
    first referral, its consent and its mail exactly as they were."""
    key = uuid.uuid4()
    with app.app_context():
        db = get_session()
        nurse = db.get(User, world.nurse.id)

        def create():
            ctx = service.Context(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"], nurse)
            return service.create_referral(ctx, parse_referral(body(world), ctx.now), referral_id=key)

        first = create()
        db.commit()
        with pytest.raises(IntegrityError):
            create()
        assert [o for o in db if isinstance(o, Consent)] == [first.consent]
        db.rollback()
        assert [db.scalar(select(func.count()).select_from(model)) for model in (Referral, Consent, Notification)] \
            == [1, 1, 3]
        assert db.get(Referral, key).consent_id == first.consent_id
