"""Envelope encryption of personal fields: AES-256-GCM under a per-referral data key (DEK).

Each referral has its own DEK; only the DEK wrapped by the key-encryption key is stored. Every
ciphertext is bound to a context (associated data such as b"referral:<uuid>:phone"), so a blob
copied to another field or referral fails to decrypt instead of showing the wrong person's data.
Every failure is one DecryptionError that says what kind of failure, never which bytes.
"""
from __future__ import annotations

import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keyring import KeyRing, KeyringError

KEY_BYTES = 32
NONCE_BYTES = 12  # 96-bit random nonces: safe for far more messages than one key ever sees
TAG_BYTES = 16
FIELD_VERSION = 0x01


class DecryptionError(Exception):
    """A ciphertext cannot be opened: wrong key or context, tampered, shredded or malformed."""


def new_data_key() -> bytes:
    """A fresh DEK for one referral."""
    return secrets.token_bytes(KEY_BYTES)


def _seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise ValueError(f"key must be {KEY_BYTES} bytes")
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def _open(key: bytes, sealed: bytes, context: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise DecryptionError(f"key must be {KEY_BYTES} bytes")
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("ciphertext too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
    except InvalidTag:
        raise DecryptionError("wrong key or context, or ciphertext altered") from None


def wrap_data_key(ring: KeyRing, dek: bytes, context: bytes) -> tuple[str, bytes]:
    """Wrap a DEK under the ring's current KEK; store both the returned id and bytes."""
    if len(dek) != KEY_BYTES:
        raise ValueError(f"data key must be {KEY_BYTES} bytes")
    return ring.current_id, _seal(ring.current, dek, context)


def unwrap_data_key(ring: KeyRing, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
    """Unwrap a DEK with the KEK named by kek_id, which may be an older key in the ring."""
    try:
        kek = ring.get(kek_id)
    except KeyringError as e:
        raise DecryptionError(str(e)) from None
    dek = _open(kek, wrapped, context)
    if len(dek) != KEY_BYTES:
        raise DecryptionError("wrapped value is not a data key")
    return dek


def encrypt_field(dek: bytes, plaintext: str, context: bytes) -> bytes:
    """version byte + nonce + AES-256-GCM ciphertext of the UTF-8 text, bound to context."""
    return bytes([FIELD_VERSION]) + _seal(dek, plaintext.encode("utf-8"), context)


def decrypt_field(dek: bytes, blob: bytes, context: bytes) -> str:
    """The inverse of encrypt_field."""
    if not blob:
        raise DecryptionError("ciphertext too short")
    if blob[0] != FIELD_VERSION:
        raise DecryptionError("unknown ciphertext version")
    plaintext = _open(dek, blob[1:], context)
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError("plaintext is not UTF-8") from None


def encrypt_json(dek: bytes, obj: dict[str, Any], context: bytes) -> bytes:
    """A dict as canonical JSON (sorted keys, compact), encrypted like a field."""
    if not isinstance(obj, dict):
        raise TypeError("encrypt_json takes a dict")
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
    return encrypt_field(dek, text, context)


def decrypt_json(dek: bytes, blob: bytes, context: bytes) -> dict[str, Any]:
    """The inverse of encrypt_json."""
    try:
        obj = json.loads(decrypt_field(dek, blob, context))
    except json.JSONDecodeError:
        raise DecryptionError("plaintext is not JSON") from None
    if not isinstance(obj, dict):
        raise DecryptionError("plaintext is not a JSON object")
    return obj
