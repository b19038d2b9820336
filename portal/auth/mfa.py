"""The second factor: TOTP (RFC 6238) enrollment and verification, and single-use recovery codes.

- Who must have one: every account of an organization kind in PORTAL_MFA_REQUIRED_KINDS, every
  org_admin and every portal administrator. Anyone else may enroll.
- Enrollment stores a fresh secret, sealed (AES-GCM under its own data key, wrapped by the key
  ring, bound to the user's id) and unconfirmed; it counts only once a first code confirms it.
  Confirmation issues ten recovery codes, returned once and stored as hashes.
- A TOTP code is accepted for the time step before, at or after now (clock drift), and only if
  that step is later than the last one accepted for the user, so a code cannot be replayed; the
  check-and-set is one conditional UPDATE, so two requests racing with one code cannot both win.
- A recovery code works once (the same conditional UPDATE).

Takes the session, the key ring and the user; never commits, never reads the request.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from enum import StrEnum

import pyotp
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from portal.crypto import KeyRing, decrypt_field, encrypt_field, new_data_key, unwrap_data_key, wrap_data_key
from portal.db import utcnow
from portal.models import RecoveryCode, User, UserMfa

ISSUER = "Peace Portal"
STEP_SECONDS = 30
VALID_WINDOW = 1  # one step either side of now, for clock drift
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32: no 0/1/8/9 to confuse with O/I/B/g
_RECOVERY_LENGTH = 10  # 50 random bits each
_TOTP = re.compile(r"[0-9]{6}")
_RECOVERY = re.compile(rf"[a-z2-7]{{{_RECOVERY_LENGTH}}}")


class MfaError(Exception):
    """The operation does not apply to this account's second factor as it stands."""


class Outcome(StrEnum):
    """What a submitted code turned out to be. Only TOTP and RECOVERY let anyone in."""

    TOTP = "totp"
    RECOVERY = "recovery"
    WRONG = "wrong"
    REPLAYED = "replayed"  # a valid code whose time step was already used
    RECOVERY_USED = "recovery_used"  # a recovery code that was already spent

    @property
    def ok(self) -> bool:
        return self in (Outcome.TOTP, Outcome.RECOVERY)


def required(user: User, required_kinds: tuple[str, ...]) -> bool:
    """Must this account have a second factor? Admins always; others by their organization's kind."""
    return user.role == "org_admin" or user.is_portal_admin or user.organization.kind in required_kinds


def credential(db: Session, user: User) -> UserMfa | None:
    return db.get(UserMfa, user.id)


def is_enrolled(db: Session, user: User) -> bool:
    """A confirmed TOTP credential: the only state in which a second factor counts."""
    row = credential(db, user)
    return row is not None and row.confirmed_at is not None


# -- the sealed secret ----------------------------------------------------------------------------
def _context(user_id, part: str = "") -> bytes:
    return f"mfa:{user_id}{':' + part if part else ''}".encode()


def _seal(ring: KeyRing, row: UserMfa, secret: str) -> None:
    dek = new_data_key()
    row.kek_id, row.wrapped_key = wrap_data_key(ring, dek, _context(row.user_id))
    row.secret_enc = encrypt_field(dek, secret, _context(row.user_id, "totp"))


def _open(ring: KeyRing, row: UserMfa) -> str:
    dek = unwrap_data_key(ring, row.kek_id, row.wrapped_key, _context(row.user_id))
    return decrypt_field(dek, row.secret_enc, _context(row.user_id, "totp"))


def secret_of(db: Session, ring: KeyRing, user: User) -> str | None:
    """The base32 secret (pending or confirmed), or None. For showing during enrollment only."""
    row = credential(db, user)
    return _open(ring, row) if row is not None else None


def rotate_keys(db: Session, ring: KeyRing) -> int:
    """Re-wrap every TOTP data key under the ring's current key; returns how many moved."""
    moved = 0
    for row in db.scalars(select(UserMfa).where(UserMfa.kek_id != ring.current_id)):
        dek = unwrap_data_key(ring, row.kek_id, row.wrapped_key, _context(row.user_id))
        row.kek_id, row.wrapped_key = wrap_data_key(ring, dek, _context(row.user_id))
        moved += 1
    return moved


# -- enrollment -------------------------------------------------------------------------------------
def start_enrollment(db: Session, ring: KeyRing, user: User, secret: str | None = None) -> str:
    """A new secret for this account, stored sealed and unconfirmed; returns it to be shown.

    Replaces an earlier unconfirmed secret (so a secret once shown to whoever held the password
    then is never the one confirmed later). Raises MfaError when a confirmed factor exists: that
    one is only removed with a code (`remove`), never replaced by someone who has the password.
    """
    row = credential(db, user)
    if row is not None and row.confirmed_at is not None:
        raise MfaError("a confirmed second factor exists")
    secret = secret or pyotp.random_base32()
    if row is None:
        row = UserMfa(user_id=user.id)
        db.add(row)
    row.confirmed_at, row.last_used_step, row.created_at = None, None, utcnow()
    _seal(ring, row, secret)
    db.flush()
    return secret


def confirm_enrollment(db: Session, ring: KeyRing, user: User, code: str) -> list[str] | None:
    """Confirm the pending secret with a code from the authenticator; return the recovery codes
    (to be shown once), or None when the code is wrong and nothing changed."""
    row = credential(db, user)
    if row is None or row.confirmed_at is not None:
        return None
    step = _matching_step(_open(ring, row), _normalize(code), None)
    if step is None:
        return None
    done = db.execute(update(UserMfa).where(UserMfa.user_id == user.id, UserMfa.confirmed_at.is_(None))
                      .values(confirmed_at=utcnow(), last_used_step=step))
    if done.rowcount != 1:
        return None
    return new_recovery_codes(db, user)


def enroll(db: Session, ring: KeyRing, user: User, secret: str) -> list[str]:
    """Enroll with a given secret, confirmed at once. For `portal demo-data` and test factories only:
    a person enrolls through start_enrollment and confirm_enrollment."""
    start_enrollment(db, ring, user, secret)
    credential(db, user).confirmed_at = utcnow()
    return new_recovery_codes(db, user)


def remove(db: Session, user: User) -> None:
    """Delete the credential and the recovery codes. The caller has checked a code first."""
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.execute(delete(UserMfa).where(UserMfa.user_id == user.id))


# -- codes ------------------------------------------------------------------------------------------
def verify(db: Session, ring: KeyRing, user: User, code: str) -> Outcome:
    """Check a code typed at sign-in or a step-up: a TOTP code of the confirmed credential, or an
    unused recovery code. A success is recorded (the step, or the code spent) before returning."""
    row = credential(db, user)
    if row is None or row.confirmed_at is None:
        return Outcome.WRONG
    typed = _normalize(code)
    if _TOTP.fullmatch(typed):
        return _use_totp(db, ring, row, typed)
    if _RECOVERY.fullmatch(typed):
        return _use_recovery_code(db, user, typed)
    return Outcome.WRONG


def _normalize(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "").lower()[:64]


def _matching_step(secret: str, typed: str, last_used_step: int | None) -> int | None:
    """The time step (within the window around now) whose code is `typed`, if later than the last used."""
    if not _TOTP.fullmatch(typed):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    now = int(time.time()) // STEP_SECONDS
    for step in range(now - VALID_WINDOW, now + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), typed) and (last_used_step is None or step > last_used_step):
            return step
    return None


def _use_totp(db: Session, ring: KeyRing, row: UserMfa, typed: str) -> Outcome:
    secret = _open(ring, row)
    step = _matching_step(secret, typed, row.last_used_step)
    if step is None:
        return Outcome.REPLAYED if _matching_step(secret, typed, None) is not None else Outcome.WRONG
    done = db.execute(update(UserMfa)
                      .where(UserMfa.user_id == row.user_id,
                             or_(UserMfa.last_used_step.is_(None), UserMfa.last_used_step < step))
                      .values(last_used_step=step))
    return Outcome.TOTP if done.rowcount == 1 else Outcome.REPLAYED


def _hash(user_id, code: str) -> str:
    return hashlib.sha256(f"{user_id}:{code}".encode()).hexdigest()


def _use_recovery_code(db: Session, user: User, typed: str) -> Outcome:
    code_hash = _hash(user.id, typed)
    done = db.execute(update(RecoveryCode)
                      .where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash == code_hash,
                             RecoveryCode.used_at.is_(None))
                      .values(used_at=utcnow()))
    if done.rowcount == 1:
        return Outcome.RECOVERY
    spent = db.scalar(select(RecoveryCode.id).where(RecoveryCode.user_id == user.id,
                                                     RecoveryCode.code_hash == code_hash))
    return Outcome.RECOVERY_USED if spent is not None else Outcome.WRONG


def new_recovery_codes(db: Session, user: User) -> list[str]:
    """Ten fresh recovery codes ("abcde-fghij"), replacing all earlier ones; only hashes are kept."""
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes: list[str] = []
    while len(codes) < RECOVERY_CODE_COUNT:  # distinct, so each hash is unique per user
        code = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        if code not in codes:
            codes.append(code)
    db.add_all(RecoveryCode(user_id=user.id, code_hash=_hash(user.id, c)) for c in codes)
    db.flush()
    return [f"{c[:5]}-{c[5:]}" for c in codes]


def recovery_codes_left(db: Session, user: User) -> int:
    return db.scalar(select(func.count()).select_from(RecoveryCode)
                     .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))) or 0


def provisioning_uri(secret: str, account_name: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(name=account_name, issuer_name=ISSUER)
