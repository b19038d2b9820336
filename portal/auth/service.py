"""Authentication rules. Takes the session and returns the user or None; never commits."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.audit import trail
from portal.audit.events import Event
from portal.auth import lockout
from portal.auth.passwords import hash_password, needs_rehash, verify_password
from portal.db import utcnow
from portal.models import User


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def record_failure(db: Session, email: str, user: User | None, now: datetime | None = None) -> int:
    """Count a wrong password or second-factor code against the address; the audit log notes the
    moments a lock engages (for an existing account only: an unknown address names nobody)."""
    count = lockout.record_failure(db, email, now)
    if user is not None:
        user.failed_login_count = count
        if count in (lockout.THRESHOLD, lockout.HARD_LIMIT):
            trail.record(Event.ACCOUNT_LOCKED, user, allowed=False, actor=user, db=db, detail={"failures": count})
    return count


def authenticate(db: Session, email: str, password: str, now: datetime | None = None) -> User | None:
    """The user for these credentials, or None for every failure alike.

    An unknown e-mail, a wrong password, a deactivated account, a deactivated organization and
    an address locked out after repeated failures (lockout.py) are indistinguishable to the
    caller, and cost the same hashing time. users.failed_login_count mirrors the lockout count.
    """
    if lockout.is_locked(db, email, now):
        verify_password(None, password)  # the same time as any other refusal; not counted
        return None
    user = db.scalar(select(User).where(User.email == normalize_email(email)))
    if not verify_password(user.password_hash if user else None, password):
        record_failure(db, email, user, now)
        return None
    if not user.is_active:
        return None
    lockout.clear(db, email)
    user.failed_login_count = 0
    user.last_login_at = utcnow()
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user
