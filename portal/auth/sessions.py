"""Server-side sessions: the cookie carries a random token, the database its hash.

A session ends at logout, at deactivation (all of the user's sessions), after the idle timeout
and after the absolute lifetime. A replayed cookie whose row is gone loads no user.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import User, UserSession

# Refresh last_seen_at at most this often, so most requests write nothing.
_TOUCH_INTERVAL = timedelta(minutes=1)
# Every request reads its session row, with the user and the organization joined (the loads the
# model declares). Built once: composing Session.get's statement and its cache key anew cost
# about a sixth of the lookup.
_BY_TOKEN = select(UserSession).where(UserSession.token_hash == bindparam("token_hash"))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(db: Session, user: User, second_factor: bool = False) -> str:
    """A new session row; `second_factor` records that a code was proved just now (step-up fresh)."""
    token = secrets.token_urlsafe(32)
    db.add(UserSession(token_hash=_hash(token), user_id=user.id, mfa_verified_at=utcnow() if second_factor else None))
    user.session_token = token
    return token


def load_session_user(db: Session, token: str, idle: timedelta, lifetime: timedelta) -> User | None:
    row = db.execute(_BY_TOKEN, {"token_hash": _hash(token)}).scalar_one_or_none()
    if row is None:
        return None
    now = utcnow()
    user = row.user
    if not user.is_active or now - row.last_seen_at > idle or now - row.created_at > lifetime:
        db.delete(row)
        db.commit()
        return None
    if now - row.last_seen_at > _TOUCH_INTERVAL:
        row.last_seen_at = now
        db.commit()
    user.session_token = token
    return user


def mark_second_factor(db: Session, token: str) -> None:
    """Record on the session row that its user has just proved the second factor (a step-up)."""
    row = db.get(UserSession, _hash(token))
    if row is not None:
        row.mfa_verified_at = utcnow()


def second_factor_age(db: Session, token: str | None) -> timedelta | None:
    """How long ago this session last proved the second factor; None if it never did."""
    row = db.get(UserSession, _hash(token)) if token else None
    if row is None or row.mfa_verified_at is None:
        return None
    return utcnow() - row.mfa_verified_at


def close_session(db: Session, token: str | None) -> None:
    if token:
        db.execute(delete(UserSession).where(UserSession.token_hash == _hash(token)))


def close_all_sessions(db: Session, user: User) -> None:
    db.execute(delete(UserSession).where(UserSession.user_id == user.id))
