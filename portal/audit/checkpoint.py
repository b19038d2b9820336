"""Signed checkpoints of the audit log: origin, size, root and time under an Ed25519 key.

The body follows the C2SP tlog-checkpoint layout, with a timestamp as a fourth line:

    peace-portal.example/audit
    1234
    <base64 of the 32-byte root>
    2025-01-31T12:00:00Z

Every line ends with "\\n". The timestamp is UTC, "YYYY-MM-DDTHH:MM:SSZ", with ".ffffff"
before the Z only when the microseconds are not zero, so each checkpoint has exactly one text.

A signed checkpoint is the body, an empty line, and one or more signature lines in the
C2SP signed-note layout:

    — <key name> <base64(key_id || signature)>

where "—" is U+2014 EM DASH, the signature is Ed25519 over the UTF-8 body, and key_id is the
first 4 bytes of SHA-256 of the raw 32-byte public key. (C2SP signed-note derives its key id
from the name and a type byte too; this simpler id means standard note verifiers will not
recognise the key, which we do not need.) `parse_signed` accepts the text only if a signature
line carries the given key's id and verifies; lines of other keys (cosigners) are ignored, and a
line with the key's id that does not verify is an error. Parsing is strict: any deviation from
the canonical text raises CheckpointError.

Pure functions on bytes and strings: no Flask, SQLAlchemy or portal imports.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ROOT_SIZE = 32
KEY_ID_SIZE = 4
SIGNATURE_SIZE = 64
SIGNATURE_PREFIX = "\u2014 "  # EM DASH and a space, as in C2SP signed-note

_SIZE_RE = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?Z", re.ASCII)
_NAME_RE = re.compile(r"[!-~]+", re.ASCII)  # printable ASCII, no spaces
_MAX_TEXT = 64 * 1024


class CheckpointError(Exception):
    """A checkpoint is malformed, or its signature is missing, wrong or made by another key."""


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: padding required, no stray characters, canonical encoding."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CheckpointError(f"{what} is not valid base64") from None
    if _b64encode(data) != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return data


def format_timestamp(ts: datetime) -> str:
    """The canonical UTC text of an aware datetime."""
    ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    return ts.isoformat(timespec="microseconds" if ts.microsecond else "seconds") + "Z"


def parse_timestamp(text: str) -> datetime:
    """Inverse of format_timestamp; refuses any other spelling of the same instant."""
    if not _TIME_RE.fullmatch(text):
        raise CheckpointError("timestamp is not YYYY-MM-DDTHH:MM:SS[.ffffff]Z")
    try:
        ts = datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)
    except ValueError:
        raise CheckpointError("timestamp is not a valid date and time") from None
    if format_timestamp(ts) != text:
        raise CheckpointError("timestamp is not in canonical form")
    return ts


@dataclass(frozen=True)
class Checkpoint:
    """The state of the log at one moment: `size` leaves with Merkle root `root`."""

    origin: str
    size: int
    root: bytes
    timestamp: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin or self.origin != self.origin.strip():
            raise CheckpointError("origin must be a non-empty string without surrounding spaces")
        if not self.origin.isprintable():
            raise CheckpointError("origin must be one line of printable characters")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise CheckpointError("size must be a non-negative integer")
        if not isinstance(self.root, bytes) or len(self.root) != ROOT_SIZE:
            raise CheckpointError(f"root must be {ROOT_SIZE} bytes")
        if not isinstance(self.timestamp, datetime) or self.timestamp.utcoffset() is None:
            raise CheckpointError("timestamp must be a timezone-aware datetime")
        object.__setattr__(self, "timestamp", self.timestamp.astimezone(timezone.utc))

    def body(self) -> str:
        """The canonical text that is signed."""
        return f"{self.origin}\n{self.size}\n{_b64encode(self.root)}\n{format_timestamp(self.timestamp)}\n"


def parse_body(body: str) -> Checkpoint:
    """The checkpoint whose canonical body is exactly `body` (unsigned; trust nothing yet)."""
    if not body.endswith("\n"):
        raise CheckpointError("checkpoint body must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) != 4:
        raise CheckpointError(f"checkpoint body has {len(lines)} lines, not 4")
    origin, size, root, timestamp = lines
    if not _SIZE_RE.fullmatch(size):
        raise CheckpointError("size is not a decimal number")
    root_bytes = _b64decode(root, "root")
    if len(root_bytes) != ROOT_SIZE:
        raise CheckpointError(f"root is {len(root_bytes)} bytes, not {ROOT_SIZE}")
    checkpoint = Checkpoint(origin, int(size), root_bytes, parse_timestamp(timestamp))
    if checkpoint.body() != body:
        raise CheckpointError("checkpoint body is not in canonical form")
    return checkpoint


# -- keys ---------------------------------------------------------------------------------------
def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> bytes:
    """First 4 bytes of SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(_raw_public(public_key)).digest()[:KEY_ID_SIZE]


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 signing key."""
    return Ed25519PrivateKey.generate()


def load_private_key(pem_or_raw_path: str | Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key: an unencrypted PEM (PKCS#8) file or a raw 32-byte seed file."""
    data = Path(pem_or_raw_path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{pem_or_raw_path}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CheckpointError(f"{pem_or_raw_path}: not an Ed25519 key")
        return key
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    raise CheckpointError(f"{pem_or_raw_path}: neither a PEM file nor a raw 32-byte Ed25519 seed")


def private_key_pem(private_key: Ed25519PrivateKey) -> str:
    """The private key as unencrypted PKCS#8 PEM (store it with mode 0600)."""
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode("ascii")


def public_key_pem(private_key: Ed25519PrivateKey) -> str:
    """The public half of the key as SubjectPublicKeyInfo PEM, to publish for verifiers."""
    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo
                                                 ).decode("ascii")


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """Read a public key written by `public_key_pem`."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise CheckpointError(f"not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError("not an Ed25519 public key")
    return key


# -- signing ------------------------------------------------------------------------------------
def sign(checkpoint: Checkpoint, private_key: Ed25519PrivateKey, key_name: str | None = None) -> str:
    """The checkpoint body, an empty line and one signature line; key_name defaults to the origin."""
    name = checkpoint.origin if key_name is None else key_name
    if not _NAME_RE.fullmatch(name):
        raise CheckpointError("key name must be printable ASCII without spaces")
    body = checkpoint.body()
    signature = private_key.sign(body.encode("utf-8"))
    blob = key_id(private_key.public_key()) + signature
    return f"{body}\n{SIGNATURE_PREFIX}{name} {_b64encode(blob)}\n"


def parse_signed(text: str, public_key: Ed25519PublicKey, key_name: str | None = None) -> Checkpoint:
    """The checkpoint in `text` if `public_key` signed it (and under `key_name`, when given).

    Raises CheckpointError for malformed text, no signature by this key, or a bad signature.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError("signed checkpoint is not UTF-8") from None
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        raise CheckpointError("signed checkpoint must be a string of reasonable size")
    body, sep, signatures = text.partition("\n\n")
    if not sep:
        raise CheckpointError("signed checkpoint has no empty line before its signatures")
    body += "\n"
    checkpoint = parse_body(body)
    if not signatures.endswith("\n"):
        raise CheckpointError("signature block must end with a newline")
    wanted = key_id(public_key)
    verified = False
    for line in signatures[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise CheckpointError("malformed signature line")
        parts = line[len(SIGNATURE_PREFIX):].split(" ")
        if len(parts) != 2 or not _NAME_RE.fullmatch(parts[0]):
            raise CheckpointError("malformed signature line")
        name, blob = parts[0], _b64decode(parts[1], "signature")
        if len(blob) <= KEY_ID_SIZE:
            raise CheckpointError("signature too short")
        if blob[:KEY_ID_SIZE] != wanted:
            continue  # another key's signature (a cosigner): not ours to judge
        if key_name is not None and name != key_name:
            raise CheckpointError(f"signature by this key is named {name!r}, expected {key_name!r}")
        signature = blob[KEY_ID_SIZE:]
        if len(signature) != SIGNATURE_SIZE:
            raise CheckpointError("Ed25519 signature is not 64 bytes")
        try:
            public_key.verify(signature, body.encode("utf-8"))
        except InvalidSignature:
            raise CheckpointError("checkpoint signature does not verify") from None
        verified = True
    if not verified:
        raise CheckpointError("checkpoint is not signed by this key")
    return checkpoint
