"""Key-encryption keys (KEKs): parse, format, generate and load the key ring.

The ring is configuration, not data: it comes from PORTAL_KEK (or the file PORTAL_KEK_FILE) as
`ID:BASE64` entries, the first being the current key. Older entries stay so that data keys
wrapped before a rotation can still be unwrapped until they are re-wrapped. Error messages name
an entry's position, never its text, because that text is the key.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

KEY_BYTES = 32
_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class KeyringError(Exception):
    """The key ring is missing or malformed; one line for the operator, never key material."""


@dataclass(frozen=True)
class KeyRing:
    """The current KEK (used to wrap) and every KEK still accepted for unwrapping."""

    current_id: str
    # repr=False: a logged or printed ring must not show its keys.
    keys: Mapping[str, bytes] = field(repr=False)

    def __post_init__(self) -> None:
        if self.current_id not in self.keys:
            raise KeyringError(f"current key id {self.current_id!r} is not in the ring")
        for kek_id, key in self.keys.items():
            if not _ID.fullmatch(kek_id):
                raise KeyringError(f"invalid key id {kek_id!r}")
            if len(key) != KEY_BYTES:
                raise KeyringError(f"key {kek_id!r} is not {KEY_BYTES} bytes")
        # A read-only copy: nobody holding the ring can swap a key under it.
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))

    @property
    def current(self) -> bytes:
        return self.keys[self.current_id]

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.current_id, *(k for k in self.keys if k != self.current_id))

    def get(self, kek_id: str) -> bytes:
        try:
            return self.keys[kek_id]
        except KeyError:
            raise KeyringError(f"unknown key-encryption key id {kek_id[:64]!r}") from None


def _decode_key(text: str) -> bytes | None:
    """Standard or urlsafe base64, padding optional; None when it is not base64."""
    text = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_keyring(text: str) -> KeyRing:
    """Parse `ID:BASE64` entries separated by commas and/or newlines; the first is current."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries += [e.strip() for e in line.split(",") if e.strip()]
    if not entries:
        raise KeyringError("key ring has no entries (expected ID:BASE64, ...)")
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(entries, start=1):
        kek_id, colon, encoded = entry.partition(":")
        if not colon:
            raise KeyringError(f"key ring entry {position}: expected ID:BASE64")
        if not _ID.fullmatch(kek_id):
            raise KeyringError(f"key ring entry {position}: id must be 1-32 of A-Z a-z 0-9 _ -")
        if kek_id in keys:
            raise KeyringError(f"key ring entry {position}: duplicate key id")
        key = _decode_key(encoded.strip())
        if key is None:
            raise KeyringError(f"key ring entry {position}: key is not valid base64")
        if len(key) != KEY_BYTES:
            raise KeyringError(f"key ring entry {position}: key must be {KEY_BYTES} bytes, got {len(key)}")
        keys[kek_id] = key
    return KeyRing(current_id=next(iter(keys)), keys=keys)


def _encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii").rstrip("=")


def format_keyring(ring: KeyRing) -> str:
    """The inverse of parse_keyring: current first, one entry per line."""
    return "\n".join(f"{kek_id}:{_encode_key(ring.get(kek_id))}" for kek_id in ring.ids)


def generate_key_entry(kek_id: str | None = None) -> str:
    """A new `ID:BASE64` entry; the default id carries its creation date to help rotation."""
    if kek_id is None:
        kek_id = f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"
    if not _ID.fullmatch(kek_id):
        raise KeyringError("key id must be 1-32 of A-Z a-z 0-9 _ -")
    return f"{kek_id}:{_encode_key(secrets.token_bytes(KEY_BYTES))}"


def _read(path: Path, label: str) -> KeyRing:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise KeyringError(f"cannot read {label} {str(path)!r}: {e.strerror or type(e).__name__}") from None
    except UnicodeDecodeError:
        raise KeyringError(f"{label} {str(path)!r} is not UTF-8 text") from None
    try:
        return parse_keyring(text)
    except KeyringError as e:
        raise KeyringError(f"{label} {str(path)!r}: {e}") from None


def load_keyring(
    env_value: str | None,
    file_path: str | os.PathLike[str] | None,
    instance_path: str | os.PathLike[str],
    production: bool,
) -> KeyRing:
    """The ring from PORTAL_KEK, else PORTAL_KEK_FILE, else (development only) instance/kek.

    Production must be given its keys explicitly: a key generated on the server's disk would sit
    beside the database it protects, and losing it would silently shred every referral.
    """
    if env_value:
        try:
            return parse_keyring(env_value)
        except KeyringError as e:
            raise KeyringError(f"PORTAL_KEK: {e}") from None
    if file_path:
        return _read(Path(file_path), "PORTAL_KEK_FILE")
    if production:
        raise KeyringError("production requires PORTAL_KEK or PORTAL_KEK_FILE")
    path = Path(instance_path) / "kek"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(generate_key_entry() + "\n")
    return _read(path, "development key file")
