"""Two workers acting on one referral at the same moment, on PostgreSQL with real connections."""
import threading
import uuid

import pytest

from portal.db import get_session
from portal.errors import ConflictError
from portal.models import Referral, ReferralEvent, User
from portal.referrals import service
from portal.referrals.inputs import parse_referral
from tests.referral_world import build_world


def _send(app, world, also=()) -> uuid.UUID:
    with app.app_context():
        db = get_session()
        nurse = db.get(User, world.nurse.id)
        ctx = service.Context(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"], nurse)
        data = parse_referral({
            "receiver_org_id": str(world.north.id), "person": {"preferred_name": "P", "phone": "5552345678"},
            "age_band": "25_34", "zone": "N1", "reason": "assault", "services": ["care_management"],
            "consent": {"method": "written", "recipient_org_ids": [str(world.north.id), *map(str, also)],
                        "data_categories": ["contact"]}}, ctx.now)
        referral = service.create_referral(ctx, data)
        db.commit()
        return referral.id


def _race(app, referral_id, steps):
    """Run each (user_id, verb, kwargs) in its own thread and connection, all loaded before any writes."""
    loaded = threading.Barrier(len(steps))
    results = [None] * len(steps)

    def worker(index, user_id, verb, kwargs):
        with app.app_context():
            db = get_session()
            actor = db.get(User, user_id)
            referral = db.get(Referral, referral_id)
            ctx = service.Context(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"], actor)
            loaded.wait(timeout=10)  # both hold version 1 of the row before either writes
            try:
                if verb == "handoff":
                    service.handoff(ctx, referral, **kwargs)
                else:
                    service.transition(ctx, referral, verb, **kwargs)
                db.commit()
                results[index] = "won"
            except ConflictError as error:
                db.rollback()
                results[index] = error.message

    threads = [threading.Thread(target=worker, args=(i, *step)) for i, step in enumerate(steps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.fixture
def pg_app(app, database_url):
    assert database_url.startswith("postgresql")  # SQLite serializes writers; the race is PostgreSQL's
    return app


@pytest.mark.postgres_only
@pytest.mark.parametrize("second", [("accept", {}), ("cancel", {"reason": "sent_in_error"})])
def test_exactly_one_of_two_concurrent_transitions_wins(pg_app, second):
    """Accept + accept, or accept + cancel, at once: one wins, the other gets a clear conflict."""
    app = pg_app
    world = build_world(app)
    rounds = 5
    for _ in range(rounds):
        referral_id = _send(app, world)
        second_actor = world.north_staff2.id if second[0] == "accept" else world.nurse.id
        results = _race(app, referral_id, [(world.north_staff.id, "accept", {}),
                                           (second_actor, second[0], second[1])])
        assert sorted(r == "won" for r in results) == [False, True], results
        loser = next(r for r in results if r != "won")
        assert "changed this referral a moment ago" in loser or "cannot be" in loser
        with app.app_context():
            db = get_session()
            referral = db.get(Referral, referral_id)
            assert referral.status in ("accepted", "cancelled") and referral.version == 2
            changes = db.query(ReferralEvent).filter(ReferralEvent.referral_id == referral_id,
                                                     ReferralEvent.from_status.is_not(None)).count()
            assert changes == 1


@pytest.mark.postgres_only
def test_two_concurrent_handoffs_make_one_child(pg_app):
    """Two workers hand the same referral to the provider at once: one child, one clear conflict;
    and a second handoff to an organization that already has it open is refused."""
    app = pg_app
    world = build_world(app)
    referral_id = _send(app, world, also=[world.provider.id])
    assert _race(app, referral_id, [(world.north_staff.id, "accept", {})]) == ["won"]
    results = _race(app, referral_id, [(world.north_staff.id, "handoff", {"receiver_org_id": world.provider.id}),
                                       (world.north_admin.id, "handoff", {"receiver_org_id": world.provider.id})])
    assert sorted(r == "won" for r in results) == [False, True], results
    assert _race(app, referral_id, [(world.north_admin.id, "handoff", {"receiver_org_id": world.provider.id})]) \
        == ["This referral is already with that organization."]
    with app.app_context():
        assert get_session().query(Referral).filter(Referral.parent_id == referral_id).count() == 1
