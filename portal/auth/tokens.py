"""Single-use, expiring links by e-mail: invitations (7 days) and password resets (1 hour).

A token is 32 random bytes, sent as base64url. The database finds it by its SHA-256; the raw
token is kept only wrapped by the key-encryption key, and only until the outbox has sent its mail
(notify.py composes mail after the response). Issuing a token revokes the user's older ones of
the same purpose, so a resend invalidates the previous link; setting a password revokes all.

Services take the session (and `now`, for tests) and never commit. Refusals raise TokenError,
whose message is safe to show to whoever holds the link.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from portal.auth import lockout
from portal.auth.passwords import hash_password, password_problem
from portal.auth.service import normalize_email
from portal.auth.sessions import close_all_sessions
from portal.crypto import DecryptionError, KeyRing, unwrap_data_key, wrap_data_key
from portal.db import new_id, utcnow
from portal.errors import ServiceError
from portal.models import AccountToken, Notification, User

INVITE, RESET = "invite", "reset"
LIFETIME = {INVITE: timedelta(days=7), RESET: timedelta(hours=1)}
MAIL_KIND = {INVITE: "invitation", RESET: "password_reset"}
RESETS_PER_HOUR = 3  # per account: asking again and again cannot flood someone's inbox
TOKEN_BYTES = 32

INVALID, EXPIRED, USED = "invalid", "expired", "used"
MESSAGES = {
    INVALID: "This link is not valid. Open the newest link from your e-mail, or ask for a new one.",
    EXPIRED: "This link has expired. Ask for a new one.",
    USED: "This link has already been used. Sign in, or ask for a new link.",
}


class TokenError(ServiceError):
    def __init__(self, reason: str):
        super().__init__(MESSAGES[reason])
        self.reason = reason


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _context(token: AccountToken) -> bytes:
    return f"account-token:{token.id}:{token.purpose}".encode()


def issue(db: Session, ring: KeyRing, user: User, purpose: str, now: datetime | None = None) -> str:
    """A new link for the user, queued in the outbox; returns the raw token (tests only need it)."""
    now = now or utcnow()
    revoke(db, user, purpose, now)
    secret = secrets.token_bytes(TOKEN_BYTES)
    raw = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
    token = AccountToken(id=new_id(), user_id=user.id, purpose=purpose, token_hash=_hash(raw), created_at=now,
                         expires_at=now + LIFETIME[purpose])
    token.kek_id, token.wrapped_token = wrap_data_key(ring, secret, _context(token))
    db.add(token)
    db.add(Notification(kind=MAIL_KIND[purpose], recipient_id=user.id, account_token_id=token.id, created_at=now))
    db.flush()
    return raw


def raw_token(ring: KeyRing, token: AccountToken, now: datetime | None = None) -> str | None:
    """The token for its mail, or None when the link can no longer be used (or was already sent)."""
    if token.wrapped_token is None or not _usable(token, now or utcnow()):
        return None
    try:
        secret = unwrap_data_key(ring, token.kek_id, token.wrapped_token, _context(token))
    except DecryptionError:  # its key-encryption key was retired before the mail went out
        return None
    return base64.urlsafe_b64encode(secret).rstrip(b"=").decode()


def mail_sent(token: AccountToken) -> None:
    """The mail has left: forget the raw token; only its hash remains."""
    token.kek_id = token.wrapped_token = None


def find(db: Session, raw: str | None, purpose: str, now: datetime | None = None) -> AccountToken:
    """The usable token behind a link, or TokenError. A token of another purpose, a tampered or
    replaced one, and one for a deactivated account are all simply not valid."""
    now = now or utcnow()
    if not _well_formed(raw):
        raise TokenError(INVALID)
    token = db.scalar(select(AccountToken).where(AccountToken.token_hash == _hash(raw)))
    if token is None or token.purpose != purpose or token.revoked_at is not None or not token.user.is_active:
        raise TokenError(INVALID)
    if token.used_at is not None:
        raise TokenError(USED)
    if now >= token.expires_at:
        raise TokenError(EXPIRED)
    return token


def redeem(db: Session, raw: str | None, purpose: str, password: str, now: datetime | None = None) -> User:
    """Set the password through a link: once only. Every session of the account ends, every other
    link of the account is revoked, and the sign-in lockout is cleared."""
    now = now or utcnow()
    token = find(db, raw, purpose, now)
    if problem := password_problem(password or ""):
        raise ServiceError(problem, "password")
    # One UPDATE decides between two concurrent uses of the same link: only one changes the row.
    won = db.execute(update(AccountToken).where(AccountToken.id == token.id, AccountToken.used_at.is_(None),
                                                AccountToken.revoked_at.is_(None))
                     .values(used_at=now, kek_id=None, wrapped_token=None)).rowcount
    if not won:
        raise TokenError(USED)
    user = token.user
    user.password_hash = hash_password(password)
    user.failed_login_count = 0
    revoke(db, user, None, now)
    close_all_sessions(db, user)
    lockout.clear(db, user.email)
    return user


def revoke(db: Session, user: User, purpose: str | None, now: datetime | None = None) -> None:
    """Make the user's outstanding links (of one purpose, or all) unusable, and drop their unsent mail."""
    where = [AccountToken.user_id == user.id, AccountToken.used_at.is_(None), AccountToken.revoked_at.is_(None)]
    if purpose:
        where.append(AccountToken.purpose == purpose)
    ids = list(db.scalars(select(AccountToken.id).where(*where)))
    if ids:
        db.execute(delete(Notification).where(Notification.account_token_id.in_(ids), Notification.sent_at.is_(None)))
        db.execute(update(AccountToken).where(AccountToken.id.in_(ids))
                   .values(revoked_at=now or utcnow(), kek_id=None, wrapped_token=None))


def request_reset(db: Session, ring: KeyRing, email: str, now: datetime | None = None) -> None:
    """Queue a reset link if an active account has this address; otherwise do nothing.

    The caller answers the same either way. At most RESETS_PER_HOUR links an hour per account.
    """
    now = now or utcnow()
    user = db.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None or not user.is_active:
        return
    recent = db.scalar(select(func.count()).select_from(AccountToken).where(
        AccountToken.user_id == user.id, AccountToken.purpose == RESET,
        AccountToken.created_at > now - timedelta(hours=1)))
    if recent >= RESETS_PER_HOUR:
        return
    issue(db, ring, user, RESET, now)


PENDING, LAPSED, NOT_INVITED = "pending", "expired", "not_invited"


def invitation_status(db: Session, user: User, now: datetime | None = None) -> tuple[str, datetime | None] | None:
    """Where an account without a password stands: (PENDING, expires_at), (LAPSED, None) for a link
    that expired or was replaced by a reset, or (NOT_INVITED, None). None once it has a password."""
    if user.password_hash is not None:
        return None
    token = db.scalar(select(AccountToken).where(AccountToken.user_id == user.id, AccountToken.purpose == INVITE)
                      .order_by(AccountToken.created_at.desc()).limit(1))
    if token is None:
        return NOT_INVITED, None
    if _usable(token, now or utcnow()):
        return PENDING, token.expires_at
    return LAPSED, None


def _usable(token: AccountToken, now: datetime) -> bool:
    return token.used_at is None and token.revoked_at is None and now < token.expires_at and token.user.is_active


def _well_formed(raw: str | None) -> bool:
    if not isinstance(raw, str) or len(raw) != 43:
        return False
    try:
        return len(base64.urlsafe_b64decode(raw + "=")) == TOKEN_BYTES
    except (binascii.Error, ValueError):
        return False


def prune(db: Session, now: datetime, kept: timedelta = timedelta(days=30)) -> int:
    """Delete links that stopped working more than `kept` ago (used, revoked or expired alike)."""
    return db.execute(delete(AccountToken).where(AccountToken.expires_at < now - kept)).rowcount
