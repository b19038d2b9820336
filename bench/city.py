"""The synthetic city: zones, organizations and accounts, and the files the benchmark reuses.

Accounts share one password (hashed once, at the portal's production argon2id cost) and one TOTP
secret (enrolled through portal.auth.mfa, sealed under the KEK ring like any other). Both live in
the state directory with the KEK, the secret key and the audit signing key, outside the repository.
"""
from __future__ import annotations

import json
import os
import random
import secrets
from dataclasses import dataclass
from pathlib import Path

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.admin import service
from portal.audit import checkpoint
from portal.auth import mfa, passwords
from portal.crypto import KeyRing, generate_key_entry, parse_keyring
from portal.models import Organization, User

AREAS = ("Northside", "Eastside", "Southside", "Westside")
HOSPITALS = (("Mercy General HVIP", 30), ("County Trauma Center HVIP", 25), ("St. Luke's Violence Intervention", 20),
             ("University Hospital HVIP", 15), ("Children's Hospital HVIP", 10))
PROVIDERS = ("Harbor Behavioral Health", "Second Chance Housing", "Workforce Bridge", "Family Counseling Center",
             "Youth Mentoring Alliance", "Legal Aid Partners", "Recovery Network", "Education Pathways")
# role → how many per organization kind
STAFFING = {"hospital_program": {"staff": 12, "org_admin": 1},
            "cvi_team": {"staff": 10, "supervisor": 2, "org_admin": 1},
            "service_provider": {"staff": 4, "org_admin": 1}, "city_office": {"staff": 3, "org_admin": 1},
            "police_partner": {"staff": 2}}
DOMAIN = "bench.test"


@dataclass
class State:
    """Files under the state directory: created once, reused by every later run."""

    directory: Path

    def _file(self, name: str, make) -> Path:
        path = self.directory / name
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(make())
        return path

    @property
    def kek_file(self) -> Path:
        return self._file("kek", lambda: generate_key_entry("bench1") + "\n")

    @property
    def secret_key(self) -> str:
        return self._file("secret_key", lambda: secrets.token_urlsafe(48)).read_text().strip()

    @property
    def audit_key_file(self) -> Path:
        return self._file("audit-signing-key.pem",
                          lambda: checkpoint.private_key_pem(checkpoint.generate_private_key()))

    @property
    def credentials(self) -> dict:
        """The accounts' shared password and TOTP secret."""
        path = self._file("credentials.json", lambda: json.dumps(
            {"password": secrets.token_urlsafe(18), "totp_secret": pyotp.random_base32()}))
        return json.loads(path.read_text())

    def ring(self) -> KeyRing:
        return parse_keyring(self.kek_file.read_text())

    def manifest_path(self, database: str) -> Path:
        return self.directory / f"{database}.json"

    def environment(self, database_url: str) -> dict:
        """PORTAL_* settings of a production process on this database."""
        return {"PORTAL_ENV": "production", "PORTAL_DATABASE_URL": database_url,
                "PORTAL_SECRET_KEY": self.secret_key, "PORTAL_KEK_FILE": str(self.kek_file),
                "PORTAL_AUDIT_KEY_FILE": str(self.audit_key_file)}


def build(db: Session, ring: KeyRing, rng: random.Random, credentials: dict) -> dict:
    """Zones, organizations and users; returns the plain description the simulation needs."""
    zones = []
    for area in AREAS:
        for n in range(1, 7):
            zones.append(service.create_zone(db, f"{area[0]}{n}", f"{area} {n}"))
    # Violence concentrates: a few zones carry most of it (Zipf-like weights, seeded order).
    weights = [1 / (rank + 1) ** 0.7 for rank in range(len(zones))]
    rng.shuffle(weights)
    orgs = {}
    for k, area in enumerate(AREAS):
        for n, j in enumerate((0, 2, 4), start=1):  # three teams an area, two zones each
            name = f"{area} Peace Team {n}"
            orgs[name] = service.create_organization(db, name, "cvi_team",
                                                     [z.id for z in zones[6 * k + j:6 * k + j + 2]])
    for name, _ in HOSPITALS:
        orgs[name] = service.create_organization(db, name, "hospital_program", [z.id for z in zones])
    for i, name in enumerate(PROVIDERS):
        served = [zones[(3 * i + k) % len(zones)] for k in range(6)]
        orgs[name] = service.create_organization(db, name, "service_provider", [z.id for z in served])
    orgs["Office of Violence Prevention"] = service.create_organization(db, "Office of Violence Prevention",
                                                                         "city_office", [])
    orgs["City Police Department"] = service.create_organization(db, "City Police Department", "police_partner", [])
    password_hash = passwords.hash_password(credentials["password"])  # once: argon2id at production cost
    users = []
    for name, org in orgs.items():
        slug = "".join(c for c in name.lower().replace(" ", "-") if c.isalnum() or c == "-")
        for role, count in STAFFING[org.kind].items():
            for n in range(1, count + 1):
                users.append(User(email=f"{slug}-{role.replace('_', '')}{n}@{DOMAIN}",
                                  display_name=f"{role.replace('_', ' ').title()} {n}, {name}", organization=org,
                                  role=role, password_hash=password_hash))
    users.append(User(email=f"portal-admin@{DOMAIN}", display_name="Portal administrator",
                      organization=orgs["Office of Violence Prevention"], role="staff", is_portal_admin=True,
                      password_hash=password_hash))
    db.add_all(users)
    db.flush()
    for user in users:
        mfa.enroll(db, ring, user, credentials["totp_secret"])
    return describe(db, zones, weights)


def describe(db: Session, zones, weights) -> dict:
    orgs = list(db.scalars(select(Organization)).unique())
    users = list(db.scalars(select(User)).unique())
    team_of_zone, providers_of_zone = {}, {}
    for org in orgs:
        for zone in org.zones:
            if org.kind == "cvi_team":
                team_of_zone[zone.id] = org.id
            elif org.kind == "service_provider":
                providers_of_zone.setdefault(zone.id, []).append(org.id)
    staff, leads = {}, {}
    for user in users:
        (staff if user.role == "staff" else leads).setdefault(user.organization_id, []).append(user.id)
    by_name = {o.name: o.id for o in orgs}
    return {"zones": [(z.id, w) for z, w in zip(zones, weights)], "team_of_zone": team_of_zone,
            "providers_of_zone": providers_of_zone, "hospitals": [(by_name[n], w) for n, w in HOSPITALS],
            "staff": staff, "leads": leads}
