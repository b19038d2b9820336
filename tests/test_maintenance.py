"""Key rotation and retention: interrupted and re-run without loss, idempotent."""
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.crypto import generate_key_entry
from portal.db import get_session, utcnow
from portal.models import DataKey, Referral, User
from portal.policy.projection import project_referral
from portal.referrals import maintenance, service
from portal.referrals.inputs import parse_referral
from tests.conftest import KEK, make_test_app
from tests.referral_world import build_world


def _ctx(app, user_id=None, now=None):
    db = get_session()
    actor = db.get(User, user_id) if user_id else None
    return service.Context(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"], actor, now)


def _send(app, world, name, now=None, expires_on=None):
    with app.app_context():
        ctx = _ctx(app, world.nurse.id, now)
        data = parse_referral({
            "receiver_org_id": str(world.north.id), "person": {"preferred_name": name, "phone": "5552345678"},
            "age_band": "25_34", "zone": "N1", "reason": "assault", "services": ["care_management"], "note": "n",
            "consent": {"method": "written", "recipient_org_ids": [str(world.north.id)],
                        "data_categories": ["contact", "note"], "expires_on": expires_on}}, ctx.now)
        referral = service.create_referral(ctx, data)
        ctx.db.commit()
        return referral.id


def _name_seen_by(app, user_id, referral_id):
    with app.app_context():
        db = get_session()
        view = project_referral(db, app.extensions["portal.keyring"], db.get(User, user_id),
                                db.get(Referral, referral_id))
        return (view.get("person") or {}).get("preferred_name")


def test_rotation_interrupted_and_rerun_loses_nothing(app, database_url, tmp_path):
    """Old key A → new key B: readable throughout, interrupted midway, re-run, then A can go."""
    world = build_world(app)
    ids = [_send(app, world, f"Person {i}") for i in range(5)]
    new_entry = generate_key_entry("rot2")
    both = make_test_app(database_url, tmp_path, PORTAL_KEK=f"{new_entry},{KEK}")
    with both.app_context():
        db = get_session()
        ring = both.extensions["portal.keyring"]
        assert maintenance.keys_to_rotate(db, ring) == 5

        def stop_after_first_batch(n):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            maintenance.rotate_keys(db, ring, batch=2, progress=stop_after_first_batch)
        db.rollback()
        assert maintenance.keys_to_rotate(db, ring) == 3
    # mid-rotation the portal keeps serving: every referral is readable with the two-key ring
    assert [_name_seen_by(both, world.north_admin.id, i) for i in ids] == [f"Person {i}" for i in range(5)]
    with both.app_context():
        db = get_session()
        assert maintenance.rotate_keys(db, both.extensions["portal.keyring"], batch=2) == 3
        assert maintenance.rotate_keys(db, both.extensions["portal.keyring"]) == 0  # re-run: nothing left
        assert set(db.scalars(select(DataKey.kek_id))) == {"rot2"}
    both.extensions["portal.db"].dispose()
    only_new = make_test_app(database_url, tmp_path, PORTAL_KEK=new_entry)
    assert [_name_seen_by(only_new, world.north_admin.id, i) for i in ids] == [f"Person {i}" for i in range(5)]
    only_new.extensions["portal.db"].dispose()


def test_retention_ends_expired_consents_and_purges_old_closed_referrals(app):
    world = build_world(app)
    long_ago = utcnow() - timedelta(days=400)
    expiring = _send(app, world, "Expiring", now=long_ago, expires_on=(long_ago + timedelta(days=30)).date().isoformat())
    old_closed = _send(app, world, "Old Closed")
    fresh = _send(app, world, "Fresh")
    with app.app_context():
        ctx = _ctx(app, world.north_admin.id, now=utcnow() - timedelta(days=200))
        service.transition(ctx, ctx.db.get(Referral, old_closed), "decline", reason="at_capacity")
        ctx.db.commit()
    with app.app_context():
        db = get_session()
        done = maintenance.run_retention(db, lambda: _ctx(app), 180, utcnow())
        assert done == {"expired_consents": 1, "purged_referrals": 1}
        again = maintenance.run_retention(db, lambda: _ctx(app), 180, utcnow())
        assert again == {"expired_consents": 0, "purged_referrals": 0}
        expired = db.get(Referral, expiring)
        assert expired.status == "revoked" and expired.personal_enc is None and db.get(DataKey, expiring) is None
        assert db.get(Referral, old_closed).personal_enc is None and db.get(DataKey, old_closed) is None
        assert db.get(Referral, old_closed).status == "declined"
    assert _name_seen_by(app, world.north_admin.id, fresh) == "Fresh"
