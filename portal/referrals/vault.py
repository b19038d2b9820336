"""Personal fields of a referral, sealed under its own data key, and shredded with it.

The data key is wrapped by the key-encryption key ring and stored in `data_keys`; each field is
bound to its referral and field name (the AES-GCM associated data), so a ciphertext copied into
another row does not decrypt. Shredding deletes the wrapped key and the ciphertexts.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from portal.crypto import (DecryptionError, KeyRing, decrypt_field, decrypt_json, encrypt_field, encrypt_json,
                           new_data_key, unwrap_data_key, wrap_data_key)
from portal.db import utcnow
from portal.models import ContactAttempt, DataKey, Referral


def _context(referral_id, field: str = "") -> bytes:
    return f"referral:{referral_id}{':' + field if field else ''}".encode()


def seal(db: Session, ring: KeyRing, referral: Referral, person: dict | None, note: str | None,
         now: datetime | None = None) -> bytes:
    """Give the referral a new data key and encrypt its personal fields; return the key."""
    dek = new_data_key()
    kek_id, wrapped = wrap_data_key(ring, dek, _context(referral.id))
    referral.data_key = DataKey(referral_id=referral.id, kek_id=kek_id, wrapped_key=wrapped, created_at=now or utcnow())
    referral.personal_enc = encrypt_json(dek, person, _context(referral.id, "person")) if person else None
    referral.note_enc = encrypt_field(dek, note, _context(referral.id, "note")) if note else None
    return dek


def data_key(db: Session, ring: KeyRing, referral: Referral) -> bytes | None:
    """The referral's data key, or None once it has been shredded."""
    row = db.get(DataKey, referral.id)
    if row is None:
        return None
    return unwrap_data_key(ring, row.kek_id, row.wrapped_key, _context(referral.id))


def open_person(dek: bytes | None, referral: Referral) -> dict | None:
    if dek is None or referral.personal_enc is None:
        return None
    return decrypt_json(dek, referral.personal_enc, _context(referral.id, "person"))


def open_note(dek: bytes | None, referral: Referral) -> str | None:
    if dek is None or referral.note_enc is None:
        return None
    return decrypt_field(dek, referral.note_enc, _context(referral.id, "note"))


def seal_contact_note(dek: bytes, attempt: ContactAttempt, note: str) -> None:
    attempt.note_enc = encrypt_field(dek, note, _context(attempt.referral_id, f"contact:{attempt.id}"))


def open_contact_note(dek: bytes | None, attempt: ContactAttempt) -> str | None:
    if dek is None or attempt.note_enc is None:
        return None
    try:
        return decrypt_field(dek, attempt.note_enc, _context(attempt.referral_id, f"contact:{attempt.id}"))
    except DecryptionError:
        return None


def shred(db: Session, referral_ids: list) -> None:
    """Destroy the data keys and ciphertexts of these referrals. Codes and dates stay for counts."""
    if not referral_ids:
        return
    db.execute(delete(DataKey).where(DataKey.referral_id.in_(referral_ids)))
    db.execute(update(Referral).where(Referral.id.in_(referral_ids))
               .values(personal_enc=None, note_enc=None, personal_purged_at=utcnow()))
    db.execute(update(ContactAttempt).where(ContactAttempt.referral_id.in_(referral_ids)).values(note_enc=None))


def rewrap(ring: KeyRing, row: DataKey) -> bool:
    """Re-wrap one data key under the ring's current key; False when it already is."""
    if row.kek_id == ring.current_id:
        return False
    context = _context(row.referral_id)
    dek = unwrap_data_key(ring, row.kek_id, row.wrapped_key, context)
    row.kek_id, row.wrapped_key = wrap_data_key(ring, dek, context)
    return True
