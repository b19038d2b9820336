"""Envelope encryption of personal fields, key rotation and crypto-shredding.

Each referral's personal fields are AES-256-GCM ciphertexts under its own random data key (DEK),
bound to "referral:<id>:<field>" so a ciphertext cannot be moved. Only the DEK wrapped by a
key-encryption key (KEK, from PORTAL_KEK) is stored, with the KEK's id. Deleting the wrapped DEK
makes the fields unreadable (crypto-shredding; copies in old backups too, once their KEK is
destroyed). Rotation makes a new KEK current and re-wraps DEKs; older KEKs only unwrap.
Pure functions on bytes and strings: no Flask, SQLAlchemy or portal imports.
"""
from .envelope import (
    DecryptionError,
    decrypt_field,
    decrypt_json,
    encrypt_field,
    encrypt_json,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from .keyring import (
    KeyRing,
    KeyringError,
    format_keyring,
    generate_key_entry,
    load_keyring,
    parse_keyring,
)

__all__ = [
    "DecryptionError",
    "KeyRing",
    "KeyringError",
    "decrypt_field",
    "decrypt_json",
    "encrypt_field",
    "encrypt_json",
    "format_keyring",
    "generate_key_entry",
    "load_keyring",
    "new_data_key",
    "parse_keyring",
    "unwrap_data_key",
    "wrap_data_key",
]
