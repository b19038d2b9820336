"""Authentication rules. Takes the session and returns the user or None; never commits."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.auth.passwords import hash_password, needs_rehash, verify_password
from portal.db import utcnow
from portal.models import User


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def authenticate(db: Session, email: str, password: str) -> User | None:
    """The user for these credentials, or None for every failure alike.

    An unknown e-mail, a wrong password, a deactivated account and a deactivated organization
    are indistinguishable to the caller, and cost the same hashing time.
    """
    user = db.scalar(select(User).where(User.email == normalize_email(email)))
    if not verify_password(user.password_hash if user else None, password):
        if user is not None:
            user.failed_login_count += 1
        return None
    if not user.is_active:
        return None
    user.failed_login_count = 0
    user.last_login_at = utcnow()
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user
