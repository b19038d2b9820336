"""argon2id password hashing (argon2-cffi's RFC 9106 low-memory profile) and the rules for a new password."""
from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so both failures take the same time. Made on first
# use, not at import: a 64 MiB hash at import is every worker's start-up peak (bench/README.md).
_DUMMY_HASH: str | None = None


def use_parameters(**argon2_parameters) -> None:
    """Change the argon2id cost. Only the test suite calls this (cheaper hashes, same algorithm);
    the portal always runs with argon2-cffi's RFC 9106 defaults."""
    global _hasher, _DUMMY_HASH
    _hasher = PasswordHasher(**argon2_parameters)
    _DUMMY_HASH = None

MIN_LENGTH = 12
# Django's list of common passwords (BSD-3-Clause, see common-passwords.LICENSE beside it).
COMMON_PASSWORDS = Path(__file__).with_name("common-passwords.txt.gz")


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash("not a real password, only spends the same time")
    return _DUMMY_HASH


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None. Length and a blocklist of common passwords, no
    composition rules (NIST SP 800-63B 5.1.1.2)."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > 256:
        return "Use at most 256 characters."
    if password.strip().casefold() in _common_passwords():
        return "This password is on a list of commonly used passwords. Choose another."
    return None


@cache
def _common_passwords() -> frozenset[str]:
    """Read once per process; a missing file is a broken install and fails loudly."""
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as f:
        return frozenset(line.strip().casefold() for line in f if line.strip())
