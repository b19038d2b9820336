"""Retention handles its batch of expired consents together: every referral under every consent of
the batch is ended and shredded, whatever its state, and nothing outside the batch is touched."""
from datetime import timedelta

from sqlalchemy import func, select

from portal.db import get_session, utcnow
from portal.models import Consent, DataKey, Referral, ReferralEvent
from portal.referrals import maintenance, service
from portal.referrals.inputs import ReferralInput
from tests.referral_world import build_world
from tests.test_maintenance import _ctx, _name_seen_by, _send


def test_a_batch_of_expired_consents_ends_and_shreds_every_referral_under_them(app):
    """Three expired consents in batches of two (one consent covers two referrals): open referrals
    become revoked (consent_expired), a declined one stays declined, all lose their details; a
    fresh referral keeps its details; a second run finds nothing."""
    world = build_world(app)
    long_ago = utcnow() - timedelta(days=300)
    expires = (long_ago + timedelta(days=30)).date().isoformat()
    sent = _send(app, world, "Sent", now=long_ago, expires_on=expires)
    accepted = _send(app, world, "Accepted", now=long_ago, expires_on=expires)
    declined = _send(app, world, "Declined", now=long_ago, expires_on=expires)
    fresh = _send(app, world, "Fresh")
    with app.app_context():
        ctx = _ctx(app, world.north_admin.id, now=long_ago + timedelta(hours=2))
        service.transition(ctx, ctx.db.get(Referral, accepted), "accept")
        service.transition(ctx, ctx.db.get(Referral, declined), "decline", reason="at_capacity")
        ctx.db.commit()
        nurse = _ctx(app, world.nurse.id, now=long_ago + timedelta(hours=3))
        first = nurse.db.get(Referral, sent)
        twin = service.create_referral(nurse, _twin(first, world), consent=first.consent).id  # same consent
        nurse.db.commit()
    with app.app_context():
        db = get_session()
        done = maintenance.run_retention(db, lambda: _ctx(app), 180, utcnow(), batch=2)
        assert done == {"expired_consents": 3, "purged_referrals": 0}
        for referral_id, status in ((sent, "revoked"), (twin, "revoked"), (accepted, "revoked"),
                                    (declined, "declined")):
            referral = db.get(Referral, referral_id)
            assert referral.status == status, referral_id
            assert referral.personal_enc is None and referral.personal_purged_at is not None
            assert db.get(DataKey, referral_id) is None
        reasons = list(db.scalars(select(ReferralEvent.reason_code).where(ReferralEvent.to_status == "revoked")))
        assert sorted(reasons) == ["consent_expired"] * 3
        assert db.scalar(select(func.count()).select_from(Consent).where(Consent.revoked_at.is_(None))) == 1
        assert maintenance.run_retention(db, lambda: _ctx(app), 180, utcnow(), batch=2) == \
            {"expired_consents": 0, "purged_referrals": 0}
    assert _name_seen_by(app, world.north_admin.id, fresh) == "Fresh"


def _twin(referral, world):
    return ReferralInput(receiver_org_id=world.north.id, person={"preferred_name": "Twin", "phone": "+15552345679"},
                         age_band="25_34", zone="N1", reason="assault", services=["care_management"],
                         urgency="routine", note=None, consent=None)
