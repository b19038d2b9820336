"""Per-account lockout with growing back-off (NIST SP 800-63B 5.2.2).

After THRESHOLD consecutive failed sign-ins for one e-mail address, that address is refused for
1 minute, then 2, 4, ... up to MAX_BACKOFF after each further failure; at HARD_LIMIT consecutive
failures it stays refused until a password reset or an administrator clears it. A success clears
the count. Refused attempts check no password and are not counted, so waiting out a lock is
always enough for the owner.

The state is keyed by a hash of the normalized address, whether or not an account has it, so an
unknown address is locked exactly like a known one and the answer never tells them apart. It is
never keyed by the client's network address: failing on purpose from a shared hospital NAT locks
only the address being guessed, never a colleague's.

Functions take the session (and `now`, for tests) and never commit.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import LoginThrottle, User

THRESHOLD = 10
HARD_LIMIT = 100
FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)


def key_for(email: str) -> str:
    from portal.auth.service import normalize_email  # here, not above: service.py imports this module
    return hashlib.sha256(b"login-lockout\0" + normalize_email(email).encode()).hexdigest()


def backoff(failures: int) -> timedelta | None:
    """How long the address is refused after this many consecutive failures; None for no lock."""
    if failures < THRESHOLD:
        return None
    return min(FIRST_BACKOFF * 2 ** min(failures - THRESHOLD, 20), MAX_BACKOFF)


def is_locked(db: Session, email: str, now: datetime | None = None) -> bool:
    row = db.get(LoginThrottle, key_for(email))
    if row is None:
        return False
    if row.failures >= HARD_LIMIT:
        return True
    return row.locked_until is not None and (now or utcnow()) < row.locked_until


def record_failure(db: Session, email: str, now: datetime | None = None) -> int:
    """Count one failed attempt; lock the address if it has earned it. Returns the new count.

    The increment is one UPDATE, so concurrent failures from several workers are all counted.
    """
    now, key = now or utcnow(), key_for(email)
    counted = db.execute(update(LoginThrottle).where(LoginThrottle.key_hash == key)
                         .values(failures=LoginThrottle.failures + 1, updated_at=now)).rowcount
    if not counted:
        try:
            with db.begin_nested():  # another worker may insert the same address first
                db.add(LoginThrottle(key_hash=key, failures=1, updated_at=now))
        except IntegrityError:
            db.execute(update(LoginThrottle).where(LoginThrottle.key_hash == key)
                       .values(failures=LoginThrottle.failures + 1, updated_at=now))
    row = db.get(LoginThrottle, key, populate_existing=True)
    wait = backoff(row.failures)
    row.locked_until = now + wait if wait else None
    return row.failures


def failures(db: Session, email: str) -> int:
    row = db.get(LoginThrottle, key_for(email))
    return row.failures if row else 0


def clear(db: Session, email: str) -> None:
    """After a successful sign-in, a password reset or an administrator's unlock."""
    db.execute(delete(LoginThrottle).where(LoginThrottle.key_hash == key_for(email)))



def prune(db: Session, now: datetime, quiet: timedelta = timedelta(days=1)) -> int:
    """Forget the counters of addresses that are no account's and have been quiet a day: they
    only ever held an attacker's guesses. An account's counter stays, so its consecutive failures
    keep adding up to the hard limit however slowly they come."""
    accounts = {key_for(email) for email in db.scalars(select(User.email))}
    stale = [key for key in db.scalars(select(LoginThrottle.key_hash).where(LoginThrottle.updated_at < now - quiet))
             if key not in accounts]
    for start in range(0, len(stale), 500):
        db.execute(delete(LoginThrottle).where(LoginThrottle.key_hash.in_(stale[start:start + 500])))
    return len(stale)
