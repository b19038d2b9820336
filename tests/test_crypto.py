"""Envelope encryption and the key ring: pure functions, no app."""
from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from portal.crypto import (
    DecryptionError,
    KeyRing,
    KeyringError,
    decrypt_field,
    decrypt_json,
    encrypt_field,
    encrypt_json,
    format_keyring,
    generate_key_entry,
    load_keyring,
    new_data_key,
    parse_keyring,
    unwrap_data_key,
    wrap_data_key,
)

CTX = b"referral:3f1c2a9e-0000-4000-8000-000000000001:preferred_name"
REF_CTX = b"referral:3f1c2a9e-0000-4000-8000-000000000001"


def _ring(*kek_ids: str) -> KeyRing:
    return parse_keyring(",".join(generate_key_entry(k) for k in kek_ids))


def _flip(blob: bytes, i: int) -> bytes:
    return blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1:]


# -- fields -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["Dee", "", "Ana María — 555 0100 ☎", "x" * 2000])
def test_field_round_trip(text):
    """What encrypt_field seals, decrypt_field opens with the same key and context."""
    dek = new_data_key()
    assert decrypt_field(dek, encrypt_field(dek, text, CTX), CTX) == text


def test_field_layout_is_version_nonce_ciphertext():
    """A blob is 0x01, a 12-byte nonce, then the ciphertext and 16-byte tag."""
    blob = encrypt_field(new_data_key(), "abc", CTX)
    assert blob[0] == 0x01
    assert len(blob) == 1 + 12 + 3 + 16


def test_json_round_trip():
    """A dict comes back equal, whatever its key order."""
    dek = new_data_key()
    obj = {"phone": "555-0100", "name": "Dee", "nested": {"b": 1, "a": [1, 2]}}
    assert decrypt_json(dek, encrypt_json(dek, obj, CTX), CTX) == obj


def test_json_is_canonical():
    """encrypt_json serializes compactly with sorted keys, so equal dicts give equal plaintexts."""
    dek = new_data_key()
    blob = encrypt_json(dek, {"b": 1, "a": "é"}, CTX)
    assert decrypt_field(dek, blob, CTX) == '{"a":"é","b":1}'


def test_json_takes_only_dicts():
    """A list or string is refused on the way in and, if forced in, on the way out."""
    dek = new_data_key()
    with pytest.raises(TypeError):
        encrypt_json(dek, ["not", "a", "dict"], CTX)  # type: ignore[arg-type]
    with pytest.raises(DecryptionError):
        decrypt_json(dek, encrypt_field(dek, json.dumps([1]), CTX), CTX)
    with pytest.raises(DecryptionError):
        decrypt_json(dek, encrypt_field(dek, "not json", CTX), CTX)


def test_same_plaintext_encrypts_differently():
    """Random nonces: equal values in two referrals (or twice in one) are not linkable."""
    dek = new_data_key()
    assert encrypt_field(dek, "555-0100", CTX) != encrypt_field(dek, "555-0100", CTX)
    assert encrypt_json(dek, {"a": 1}, CTX) != encrypt_json(dek, {"a": 1}, CTX)
    ring = _ring("k1")
    assert wrap_data_key(ring, dek, REF_CTX)[1] != wrap_data_key(ring, dek, REF_CTX)[1]


def test_plaintext_does_not_appear_in_the_blob():
    """The stored bytes hold no trace of the text, in UTF-8 or any simple re-encoding."""
    dek = new_data_key()
    text = "Dee Washington 555-0100"
    blob = encrypt_field(dek, text, CTX) + encrypt_json(dek, {"name": text}, CTX)
    raw = text.encode()
    for needle in (raw, b"Washington", b"555-0100", base64.b64encode(raw), raw.hex().encode()):
        assert needle not in blob
    assert dek not in blob


def test_context_binds_field_and_referral():
    """A ciphertext copied to another field or another referral fails to decrypt."""
    dek = new_data_key()
    blob = encrypt_field(dek, "Dee", CTX)
    other_field = CTX.replace(b"preferred_name", b"phone")
    other_referral = CTX.replace(b"0001:", b"0002:")
    for ctx in (other_field, other_referral, b"", CTX + b"x"):
        with pytest.raises(DecryptionError):
            decrypt_field(dek, blob, ctx)
    with pytest.raises(DecryptionError):
        decrypt_json(dek, encrypt_json(dek, {"a": 1}, CTX), other_field)


def test_tampering_any_byte_fails():
    """Flipping any single bit of a field blob, in any position, is detected."""
    dek = new_data_key()
    blob = encrypt_field(dek, "Dee", CTX)
    for i in range(len(blob)):
        with pytest.raises(DecryptionError):
            decrypt_field(dek, _flip(blob, i), CTX)


def test_truncated_extended_or_unknown_version_blobs_fail():
    """Short, lengthened and unversioned blobs are a DecryptionError, never an IndexError."""
    dek = new_data_key()
    blob = encrypt_field(dek, "Dee", CTX)
    for bad in (b"", b"\x01", blob[:28], blob[:-1], blob + b"\x00", b"\x02" + blob[1:], b"\x00" * 64):
        with pytest.raises(DecryptionError):
            decrypt_field(dek, bad, CTX)


def test_wrong_data_key_fails():
    """Another referral's DEK, or a key of the wrong size, cannot open a field."""
    blob = encrypt_field(new_data_key(), "Dee", CTX)
    with pytest.raises(DecryptionError):
        decrypt_field(new_data_key(), blob, CTX)
    with pytest.raises(DecryptionError):
        decrypt_field(b"short", blob, CTX)


# -- wrapping ---------------------------------------------------------------------------------
def test_wrap_round_trip_names_the_current_key():
    """wrap returns the current KEK's id and nonce+ciphertext; unwrap gives the DEK back."""
    ring = _ring("k2", "k1")
    dek = new_data_key()
    kek_id, wrapped = wrap_data_key(ring, dek, REF_CTX)
    assert kek_id == "k2"
    assert len(wrapped) == 12 + 32 + 16
    assert unwrap_data_key(ring, kek_id, wrapped, REF_CTX) == dek


def test_unwrap_failures_are_decryption_errors():
    """Wrong KEK, unknown id, wrong context, tampering or short input: DecryptionError only."""
    ring = _ring("k1")
    dek = new_data_key()
    kek_id, wrapped = wrap_data_key(ring, dek, REF_CTX)
    other = _ring("k1")  # same id, different key bytes
    cases = [
        (other, kek_id, wrapped, REF_CTX),
        (ring, "nope", wrapped, REF_CTX),
        (ring, kek_id, wrapped, b"referral:other"),
        (ring, kek_id, wrapped[:20], REF_CTX),
        *((ring, kek_id, _flip(wrapped, i), REF_CTX) for i in range(len(wrapped))),
    ]
    for args in cases:
        with pytest.raises(DecryptionError):
            unwrap_data_key(*args)


def test_unknown_kek_id_error_names_the_id_only():
    """The error says which id is missing, and holds none of the ring's keys."""
    entry = generate_key_entry("k1")
    ring = parse_keyring(entry)
    kek_id, wrapped = wrap_data_key(ring, new_data_key(), REF_CTX)
    with pytest.raises(DecryptionError) as err:
        unwrap_data_key(ring, "k0", wrapped, REF_CTX)
    assert "'k0'" in str(err.value)
    assert entry.split(":")[1] not in str(err.value)


def test_wrap_refuses_a_dek_of_the_wrong_size():
    """Only 32-byte data keys are wrapped."""
    with pytest.raises(ValueError):
        wrap_data_key(_ring("k1"), b"x" * 16, REF_CTX)


def test_rotation_reads_with_the_old_key_and_rewraps_under_the_new():
    """After a new KEK becomes current, DEKs wrapped under the old one still unwrap, then move."""
    old_entry = generate_key_entry("old")
    ring_a = parse_keyring(old_entry)
    dek = new_data_key()
    field = encrypt_field(dek, "Dee", CTX)
    stored_id, stored = wrap_data_key(ring_a, dek, REF_CTX)
    assert stored_id == "old"

    ring_b = parse_keyring(generate_key_entry("new") + "\n" + old_entry)
    assert ring_b.ids == ("new", "old")
    assert unwrap_data_key(ring_b, stored_id, stored, REF_CTX) == dek

    new_id, rewrapped = wrap_data_key(ring_b, unwrap_data_key(ring_b, stored_id, stored, REF_CTX), REF_CTX)
    assert new_id == "new"
    again = unwrap_data_key(ring_b, new_id, rewrapped, REF_CTX)
    assert decrypt_field(again, field, CTX) == "Dee"  # the fields themselves never change
    with pytest.raises(DecryptionError):
        unwrap_data_key(ring_a, new_id, rewrapped, REF_CTX)  # the old ring does not know "new"
    with pytest.raises(DecryptionError):
        unwrap_data_key(parse_keyring(format_keyring(ring_b).splitlines()[0]), stored_id, stored, REF_CTX)


def test_shredding_the_wrapped_dek_leaves_nothing_to_read():
    """Without the wrapped DEK no key in the ring decrypts the fields."""
    ring = _ring("k1")
    blob = encrypt_field(new_data_key(), "Dee", CTX)
    for kek_id in ring.ids:
        with pytest.raises(DecryptionError):
            decrypt_field(ring.get(kek_id), blob, CTX)


# -- the key ring -----------------------------------------------------------------------------
def test_keyring_accessors():
    """current is the first entry's key, ids list current first, get raises for unknown ids."""
    ring = _ring("a", "b", "c")
    assert ring.current_id == "a"
    assert ring.current == ring.get("a")
    assert ring.ids == ("a", "b", "c")
    assert all(len(ring.get(k)) == 32 for k in ring.ids)
    with pytest.raises(KeyringError, match="unknown key-encryption key id 'x'"):
        ring.get("x")


def test_keyring_repr_hides_keys():
    """Printing or logging a ring shows its ids, never its key bytes."""
    ring = _ring("k1")
    assert repr(ring.current) not in repr(ring)
    assert format_keyring(ring).split(":")[1] not in repr(ring)


def test_parse_format_round_trip():
    """format_keyring is the inverse of parse_keyring: urlsafe, unpadded, current first."""
    ring = _ring("new", "mid", "old")
    text = format_keyring(ring)
    assert text.splitlines()[0].startswith("new:")
    assert "=" not in text and "+" not in text and "/" not in text
    assert parse_keyring(text) == ring
    assert format_keyring(parse_keyring(text)) == text


def test_parse_accepts_commas_newlines_comments_and_either_base64():
    """Separators mix; blank and # lines are skipped; standard, urlsafe, padded or not decode."""
    key = bytes(range(250, 256)) + bytes(range(26))  # encodes with + / - _ characters
    std = base64.b64encode(key).decode()
    url = base64.urlsafe_b64encode(key).decode()
    assert std != url and std.endswith("=")
    text = f"# current\na:{std}, b:{url.rstrip('=')}\n\n  # retired soon\nc:{std.rstrip('=')},\nd:{url}\n"
    ring = parse_keyring(text)
    assert ring.ids == ("a", "b", "c", "d")
    assert {ring.get(k) for k in ring.ids} == {key}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no entries"),
        ("\n  \n# only a comment\n", "no entries"),
        (" , ,", "no entries"),
        ("k1:{key},k1:{key}", "entry 2: duplicate"),
        ("k1:{key},bad id:{key}", "entry 2: id"),
        ("k1:{key}\n{long_id}:{key}", "entry 2: id"),
        (":{key}", "entry 1: id"),
        ("k1:{key},k2", "entry 2: expected ID:BASE64"),
        ("k1:{key},k2:not*base64!", "entry 2: key is not valid base64"),
        ("k1:{key},k2:{key}x", "entry 2: key is not valid base64"),
        ("k1:{key},k2:{short}", "entry 2: key must be 32 bytes, got 31"),
        ("k1:{key},k2:{long}", "entry 2: key must be 32 bytes, got 33"),
        ("k1:", "entry 1: key must be 32 bytes, got 0"),
    ],
)
def test_parse_errors_name_the_position(text, message):
    """Every malformed ring is a KeyringError naming the entry's position, not its text."""
    key = base64.b64encode(os.urandom(32)).decode()
    short = base64.b64encode(os.urandom(31)).decode()
    long = base64.b64encode(os.urandom(33)).decode()
    text = text.format(key=key, short=short, long=long, long_id="i" * 33)
    with pytest.raises(KeyringError) as err:
        parse_keyring(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    for secret in (key, short, long, key.rstrip("=")):
        assert secret not in str(err.value)


def test_bad_length_key_text_is_not_in_the_error():
    """A wrong-size key (likely a real key mistyped) is never echoed, even through load_keyring."""
    short = base64.urlsafe_b64encode(os.urandom(31)).decode().rstrip("=")
    with pytest.raises(KeyringError) as err:
        load_keyring(f"k1:{short}", None, "/nonexistent", production=True)
    assert str(err.value).startswith("PORTAL_KEK: ")
    assert short not in str(err.value)
    assert short[:12] not in str(err.value)


def test_generate_key_entry():
    """A generated entry parses to one 32-byte key; the default id is k<UTC date>-<4 hex>."""
    ring = parse_keyring(generate_key_entry())
    assert len(ring.current) == 32
    assert ring.current_id[0] == "k" and ring.current_id[1:9].isdigit() and ring.current_id[9] == "-"
    assert len(ring.current_id) == 14 and int(ring.current_id[10:], 16) >= 0
    assert parse_keyring(generate_key_entry("mine")).current_id == "mine"
    assert generate_key_entry("k") != generate_key_entry("k")
    with pytest.raises(KeyringError):
        generate_key_entry("no spaces")


# -- loading ----------------------------------------------------------------------------------
def test_load_prefers_env_over_file(tmp_path):
    """PORTAL_KEK wins over PORTAL_KEK_FILE; the file is used when the variable is unset."""
    file = tmp_path / "kek"
    file.write_text(generate_key_entry("fromfile") + "\n")
    env = generate_key_entry("fromenv")
    assert load_keyring(env, str(file), tmp_path, production=True).current_id == "fromenv"
    assert load_keyring(None, str(file), tmp_path, production=True).current_id == "fromfile"
    assert load_keyring("", file, tmp_path, production=True).current_id == "fromfile"


def test_load_file_errors_name_the_path(tmp_path):
    """A missing or malformed PORTAL_KEK_FILE is a KeyringError naming the file."""
    missing = tmp_path / "absent"
    with pytest.raises(KeyringError, match="absent"):
        load_keyring(None, str(missing), tmp_path, production=True)
    bad = tmp_path / "bad"
    bad.write_text("k1:tooshort\n")
    with pytest.raises(KeyringError) as err:
        load_keyring(None, str(bad), tmp_path, production=True)
    assert str(bad) in str(err.value) and "entry 1" in str(err.value)
    assert "tooshort" not in str(err.value)


def test_production_without_keys_refuses(tmp_path):
    """Production never generates a key of its own: without PORTAL_KEK(_FILE) it refuses."""
    with pytest.raises(KeyringError, match="production requires PORTAL_KEK or PORTAL_KEK_FILE"):
        load_keyring(None, None, tmp_path, production=True)
    assert not (tmp_path / "kek").exists()


def test_development_creates_a_private_key_file_once(tmp_path):
    """Development creates instance/kek with mode 0600 on first use and reuses it after."""
    instance = tmp_path / "instance" / "nested"
    first = load_keyring(None, None, instance, production=False)
    path = instance / "kek"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_keyring(None, None, str(instance), production=False)
    assert second == first
    assert first.current_id.startswith("k")


def test_development_still_prefers_env_and_file(tmp_path):
    """Given keys, development uses them and does not create instance/kek."""
    env = generate_key_entry("fromenv")
    assert load_keyring(env, None, tmp_path, production=False).current_id == "fromenv"
    assert not (tmp_path / "kek").exists()
