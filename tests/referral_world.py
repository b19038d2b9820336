"""A small world of organizations with zones, for the referral tests."""
from __future__ import annotations

from dataclasses import dataclass

from portal.admin import service as admin
from portal.db import get_session
from portal.models import Organization, User
from tests.conftest import PASSWORD, enroll, mfa_required


@dataclass
class World:
    hospital: Organization
    north: Organization
    east: Organization
    provider: Organization
    city: Organization
    police: Organization
    nurse: User
    north_admin: User
    north_staff: User
    north_staff2: User
    east_admin: User
    provider_staff: User
    city_staff: User
    police_staff: User
    portal_admin: User


def build_world(app) -> World:
    with app.app_context():
        db = get_session()
        zones = {code: admin.create_zone(db, code, f"Zone {code}") for code in ("N1", "E1", "C1")}

        def org(name, kind, codes=()):
            return admin.create_organization(db, name, kind, [zones[c].id for c in codes])

        def user(org_, role, tag, portal_admin=False):
            return admin.create_user(db, org_, f"{tag}@example.test", tag.replace("-", " ").title(), role,
                                     password=PASSWORD, portal_admin=portal_admin)[0]

        hospital = org("Mercy HVIP", "hospital_program", ["N1", "E1", "C1"])
        north = org("North Team", "cvi_team", ["N1", "C1"])
        east = org("East Team", "cvi_team", ["E1"])
        provider = org("Harbor Health", "service_provider", ["C1"])
        city = org("City OVP", "city_office")
        police = org("City PD", "police_partner")
        world = World(
            hospital=hospital, north=north, east=east, provider=provider, city=city, police=police,
            nurse=user(hospital, "staff", "nurse"),
            north_admin=user(north, "org_admin", "north-admin"),
            north_staff=user(north, "staff", "north-staff"),
            north_staff2=user(north, "staff", "north-staff-two"),
            east_admin=user(east, "org_admin", "east-admin"),
            provider_staff=user(provider, "staff", "provider-staff"),
            city_staff=user(city, "org_admin", "city-staff"),
            police_staff=user(police, "org_admin", "police-staff"),
            portal_admin=user(city, "staff", "portal-admin", portal_admin=True),
        )
        for each in vars(world).values():  # the second factor the portal requires of them
            if isinstance(each, User) and mfa_required(app, each):
                enroll(app, db, each)
        db.commit()
        return world
