"""Demo organizations, zones and users for development. Idempotent; refused in production.

With PORTAL_DEMO_TOTP_SECRET, `enroll_demo_users` gives every demo account that secret as its
second factor (one entry in an authenticator app signs in as any of them); without it, the demo
accounts that must have a second factor set one up at their first sign-in.
"""
from __future__ import annotations

import base64
import binascii
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.admin import service
from portal.auth import mfa
from portal.crypto import KeyRing
from portal.models import Organization, User, Zone

ZONES = [("N1", "Northside — Riverview"), ("N2", "Northside — Hilltop"),
         ("E1", "Eastside — Market"), ("E2", "Eastside — Harbor"), ("C1", "Central")]

# (name, kind, zones served)
ORGANIZATIONS = [
    ("Mercy General HVIP", "hospital_program", ["N1", "N2", "E1", "E2", "C1"]),
    ("Northside Peacekeepers", "cvi_team", ["N1", "N2", "C1"]),
    ("Eastside Credible Messengers", "cvi_team", ["E1", "E2"]),
    ("Harbor Behavioral Health", "service_provider", ["E2", "C1"]),
    ("Office of Violence Prevention", "city_office", []),
    ("City Police Department", "police_partner", []),
]

# (e-mail, name, organization, role, portal admin)
USERS = [
    ("hospital@demo.test", "Hana Hospital (demo)", "Mercy General HVIP", "org_admin", False),
    ("cvi@demo.test", "Carlos Northside (demo)", "Northside Peacekeepers", "org_admin", False),
    ("cvi2@demo.test", "Erin Eastside (demo)", "Eastside Credible Messengers", "org_admin", False),
    ("provider@demo.test", "Pat Provider (demo)", "Harbor Behavioral Health", "org_admin", False),
    ("city@demo.test", "Cyd City (demo)", "Office of Violence Prevention", "org_admin", False),
    ("police@demo.test", "Paul Police (demo)", "City Police Department", "staff", False),
    ("admin@demo.test", "Ada Admin (demo)", "Office of Violence Prevention", "staff", True),
]


def load_demo_data(db: Session, password: str | None) -> tuple[list[str], str | None]:
    """Create whatever of the demo set is missing. Returns (created e-mails, generated password).

    Existing accounts keep their passwords. A password is generated only when accounts are
    created and none was given.
    """
    zones = {z.code: z for z in db.scalars(select(Zone))}
    for code, label in ZONES:
        if code not in zones:
            zones[code] = service.create_zone(db, code, label)
    orgs = {o.name: o for o in db.scalars(select(Organization))}
    for name, kind, codes in ORGANIZATIONS:
        if name not in orgs:
            orgs[name] = service.create_organization(db, name, kind, [zones[c].id for c in codes])
    existing = set(db.scalars(select(User.email)))
    missing = [u for u in USERS if u[0] not in existing]
    generated = None
    if missing and not password:
        password = generated = secrets.token_urlsafe(12)
    for email, name, org_name, role, admin in missing:
        service.create_user(db, orgs[org_name], email, name, role, password=password, portal_admin=admin)
    return [u[0] for u in missing], generated


class DemoSecretError(ValueError):
    """PORTAL_DEMO_TOTP_SECRET is not a usable TOTP secret."""


def demo_totp_secret(value: str) -> str:
    """The secret normalized (upper case, no spaces or padding); DemoSecretError if it is not base32
    of at least 128 bits (RFC 4226 asks for 128, recommends 160)."""
    secret = re.sub(r"[\s=]", "", value).upper()
    try:
        valid = len(secret) >= 26 and bool(base64.b32decode(secret + "=" * (-len(secret) % 8)))
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise DemoSecretError("PORTAL_DEMO_TOTP_SECRET must be base32 (A-Z, 2-7), at least 26 characters; "
                              "make one with: python -c 'import pyotp; print(pyotp.random_base32())'")
    return secret


def enroll_demo_users(db: Session, ring: KeyRing, secret: str) -> list[str]:
    """Give every demo account without a confirmed second factor this TOTP secret; their e-mails."""
    enrolled = []
    for user in db.scalars(select(User).where(User.email.in_([u[0] for u in USERS])).order_by(User.email)):
        if not mfa.is_enrolled(db, user):
            mfa.enroll(db, ring, user, secret)
            enrolled.append(user.email)
    return enrolled
