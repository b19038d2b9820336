"""argon2id password hashing (argon2-cffi's RFC 9106 low-memory profile)."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so both failures take the same time.
_DUMMY_HASH = _hasher.hash("not a real password, only spends the same time")


def use_parameters(**argon2_parameters) -> None:
    """Change the argon2id cost. Only the test suite calls this (cheaper hashes, same algorithm);
    the portal always runs with argon2-cffi's RFC 9106 defaults."""
    global _hasher, _DUMMY_HASH
    _hasher = PasswordHasher(**argon2_parameters)
    _DUMMY_HASH = _hasher.hash("not a real password, only spends the same time")

MIN_LENGTH = 12


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None. Length over composition rules (NIST SP 800-63B)."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > 256:
        return "Use at most 256 characters."
    return None
