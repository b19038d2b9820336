"""Validation at the edge: one parser for the HTML form and the JSON API.

Field names are the API's dotted paths (`person.phone`, `consent.method`); the form uses the
same names, so a message maps to its field in both. Every error is collected, not just the first.
"""
from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from portal.errors import ValidationFailed
from portal.referrals import codes

CONSENT_DEFAULT_DAYS = 90
CONSENT_MAX_DAYS = 365


@dataclass
class ConsentInput:
    method: str
    recipient_org_ids: list[uuid.UUID]
    data_categories: list[str]
    expires_at: datetime
    obtained_at: datetime


@dataclass
class ReferralInput:
    receiver_org_id: uuid.UUID
    person: dict
    age_band: str
    zone: str
    reason: str
    services: list[str]
    urgency: str
    note: str | None
    consent: ConsentInput


@dataclass
class Errors:
    messages: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.messages.setdefault(name, message)

    def raise_if_any(self) -> None:
        if self.messages:
            raise ValidationFailed(self.messages)


def clean_text(value, name: str, errors: Errors, max_len: int, required: bool = False,
               multiline: bool = False) -> str | None:
    """Trimmed text without control characters (newlines only where `multiline`)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.add(name, "This is required.")
        return None
    if not isinstance(value, str):
        errors.add(name, "Must be text.")
        return None
    value = unicodedata.normalize("NFC", value.strip())
    allowed = {"\n"} if multiline else set()
    if any(unicodedata.category(c) in ("Cc", "Cf") and c not in allowed for c in value):
        errors.add(name, "Contains control characters; use plain text.")
        return None
    if len(value) > max_len:
        errors.add(name, f"Use at most {max_len} characters.")
        return None
    return value


def normalize_phone(value: str | None) -> str | None:
    """E.164 (+15551234567). Ten digits are read as a North American number."""
    if value is None:
        return None
    if re.search(r"[^\d\s()+.\-]", value):
        return None
    digits = re.sub(r"\D", "", value)
    if value.strip().startswith("+"):
        return f"+{digits}" if 8 <= len(digits) <= 15 else None
    if len(digits) == 10 and digits[0] not in "01":
        return f"+1{digits}"
    if len(digits) == 11 and digits[0] == "1" and digits[1] not in "01":
        return f"+{digits}"
    return None


def code(value, name: str, vocabulary: dict, errors: Errors, required: bool = True) -> str | None:
    if value in (None, ""):
        if required:
            errors.add(name, "Choose one.")
        return None
    if not isinstance(value, str) or value not in vocabulary:
        errors.add(name, "Not one of the allowed choices.")
        return None
    return value


def code_list(values, name: str, vocabulary: dict, errors: Errors, required: bool = True) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        errors.add(name, "Must be a list of choices.")
        return []
    unknown = [v for v in values if v not in vocabulary]
    if unknown:
        errors.add(name, "Not one of the allowed choices.")
        return []
    if required and not values:
        errors.add(name, "Choose at least one.")
    return sorted(set(values))


def parse_uuid(value, name: str, errors: Errors) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value not in (None, "") else errors.add(name, "Choose one.")
    except ValueError:
        errors.add(name, "Not a known choice.")
        return None


def parse_bool(value) -> bool:
    return value in (True, "true", "on", "yes", "1", 1)


def parse_consent(data, errors: Errors, now: datetime, prefix: str = "consent") -> ConsentInput | None:
    if not isinstance(data, dict):
        errors.add(prefix, "Record the person's consent before sending.")
        return None
    method = code(data.get("method"), f"{prefix}.method", codes.CONSENT_METHODS, errors)
    recipients = data.get("recipient_org_ids")
    recipient_ids = []
    if not isinstance(recipients, list) or not recipients:
        errors.add(f"{prefix}.recipient_org_ids", "Name at least one organization the person agreed to.")
    else:
        for value in recipients:
            rid = parse_uuid(value, f"{prefix}.recipient_org_ids", errors)
            if rid:
                recipient_ids.append(rid)
    categories = code_list(data.get("data_categories", []), f"{prefix}.data_categories", codes.DATA_CATEGORIES,
                           errors, required=False)
    obtained_at = now
    expires_at = now + timedelta(days=CONSENT_DEFAULT_DAYS)
    if data.get("expires_on") not in (None, ""):
        try:
            expires_on = date.fromisoformat(str(data["expires_on"]))
        except ValueError:
            errors.add(f"{prefix}.expires_on", "Use a date such as 2026-03-31.")
        else:
            expires_at = datetime.combine(expires_on, time(23, 59, 59), tzinfo=timezone.utc)
            if expires_at <= now:
                errors.add(f"{prefix}.expires_on", "The consent has already expired; record a new one.")
            elif expires_at > now + timedelta(days=CONSENT_MAX_DAYS):
                errors.add(f"{prefix}.expires_on", f"Consent lasts at most {CONSENT_MAX_DAYS} days.")
    if method is None:
        return None
    return ConsentInput(method, sorted(set(recipient_ids)), categories, expires_at, obtained_at)


def parse_referral(data: dict, now: datetime) -> ReferralInput:
    """Validate a referral as sent by the form or the API; raise ValidationFailed with every error."""
    errors = Errors()
    if not isinstance(data, dict):
        raise ValidationFailed({"": "Send a JSON object."})
    receiver = parse_uuid(data.get("receiver_org_id"), "receiver_org_id", errors)
    person_data = data.get("person") if isinstance(data.get("person"), dict) else {}
    if not isinstance(data.get("person"), dict):
        errors.add("person", "Give the person's contact details.")
    raw_phone = clean_text(person_data.get("phone"), "person.phone", errors, 32, required=True)
    phone = normalize_phone(raw_phone)
    if raw_phone and not phone:
        errors.add("person.phone", "Enter a phone number such as (555) 123-4567 or +15551234567.")
    person = {
        "preferred_name": clean_text(person_data.get("preferred_name"), "person.preferred_name", errors, 80,
                                     required=True),
        "phone": phone,
        "best_time": clean_text(person_data.get("best_time"), "person.best_time", errors, 80),
        "language": clean_text(person_data.get("language"), "person.language", errors, 40),
        "safe_to_text": parse_bool(person_data.get("safe_to_text")),
        "safe_voicemail": parse_bool(person_data.get("safe_voicemail")),
        "code_word": clean_text(person_data.get("code_word"), "person.code_word", errors, 40),
    }
    result = ReferralInput(
        receiver_org_id=receiver,
        person=person,
        age_band=code(data.get("age_band"), "age_band", codes.AGE_BANDS, errors),
        zone=clean_text(data.get("zone"), "zone", errors, 16, required=True),
        reason=code(data.get("reason"), "reason", codes.REASONS, errors),
        services=code_list(data.get("services", []), "services", codes.SERVICES, errors),
        urgency=code(data.get("urgency") or "routine", "urgency", codes.URGENCIES, errors),
        note=clean_text(data.get("note"), "note", errors, codes.NOTE_MAX, multiline=True),
        consent=parse_consent(data.get("consent"), errors, now),
    )
    errors.raise_if_any()
    return result
