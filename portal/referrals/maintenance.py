"""Jobs run from the command line: key rotation and retention.

Both work in small committed batches, so an interrupted run loses nothing and a re-run finishes
the job; on PostgreSQL rows are claimed with SKIP LOCKED, so several hosts can run at once.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from portal.crypto import KeyRing
from portal.models import Consent, DataKey, Referral
from portal.referrals import codes, service, vault

Progress = Callable[[int], None]
# Closed referrals whose details may still be held; written into the SQL (not bound) so that any
# plan can use the partial index ix_referrals_purge_due, which repeats this predicate.
PURGEABLE = Referral.status.in_(bindparam("purgeable", ("declined", "completed", "cancelled"), expanding=True,
                                          literal_execute=True))


def _claim(query, db: Session):
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return query


def keys_to_rotate(db: Session, ring: KeyRing) -> int:
    return db.scalar(select(func.count()).select_from(DataKey).where(DataKey.kek_id != ring.current_id))


def rotate_keys(db: Session, ring: KeyRing, batch: int = 500, progress: Progress = lambda n: None) -> int:
    """Re-wrap every data key under the current key-encryption key; returns how many moved.

    The portal keeps serving throughout: a key not yet re-wrapped is still read with the older
    key, which stays in PORTAL_KEK (after the current one) until this has finished.
    """
    moved = 0
    while True:
        rows = list(db.scalars(_claim(select(DataKey).where(DataKey.kek_id != ring.current_id)
                                      .order_by(DataKey.referral_id).limit(batch), db)))
        if not rows:
            return moved
        for row in rows:
            vault.rewrap(ring, row)
        db.commit()
        moved += len(rows)
        progress(len(rows))


def run_retention(db: Session, ctx_factory: Callable[[], service.Context], retention_days: int,
                  now: datetime, batch: int = 200, progress: Progress = lambda n: None) -> dict[str, int]:
    """End expired consents (their referrals become revoked, details shredded) and purge the
    personal fields of referrals closed more than `retention_days` ago. Idempotent."""
    done = {"expired_consents": 0, "purged_referrals": 0}
    while True:
        consents = list(db.scalars(_claim(select(Consent).where(Consent.revoked_at.is_(None),
                                                                Consent.expires_at <= now).limit(batch), db)))
        if not consents:
            break
        ctx = ctx_factory()
        ctx.now = now
        for consent in consents:
            consent.revoked_at = now  # expiry ends the consent as revocation does; revoked_by stays empty
        # The whole batch's referrals in one query and one shred: a statement per consent made
        # 100,000 expiries take minutes on round trips alone.
        referrals = list(db.scalars(select(Referral).where(Referral.consent_id.in_([c.id for c in consents]))))
        for referral in referrals:
            if referral.status in codes.OPEN_STATUSES:
                service.transition(ctx, referral, "revoke", reason="consent_expired")
        vault.shred(db, [r.id for r in referrals if r.personal_purged_at is None])
        db.commit()
        done["expired_consents"] += len(consents)
        progress(len(consents))
    cutoff = now - timedelta(days=retention_days)
    while True:
        ids = list(db.scalars(_claim(select(Referral.id).where(
            PURGEABLE, Referral.closed_at < cutoff,
            or_(Referral.personal_enc.is_not(None), Referral.note_enc.is_not(None),
                Referral.personal_purged_at.is_(None))).limit(batch), db)))
        if not ids:
            return done
        vault.shred(db, ids)
        db.commit()
        done["purged_referrals"] += len(ids)
        progress(len(ids))
