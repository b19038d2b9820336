"""Demo organizations, zones and users for development. Idempotent; refused in production."""
from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.admin import service
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
