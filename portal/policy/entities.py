"""Rows → Cedar entities. The only place that knows how the schema's hierarchy is built.

A user is `in` its Organization and its Role groups (`portal_admin` is a Role group too);
an Organization is `in` its OrgKind. Entities are parsed with the schema, so a missing or
mistyped attribute fails loudly instead of making a policy condition error (and be skipped).
"""
from __future__ import annotations

from portal.db import utcnow
from portal.models import Organization, Referral, User

PORTAL = {"type": "Portal", "id": "portal"}


def uid(entity_type: str, entity_id) -> dict:
    return {"type": entity_type, "id": str(entity_id)}


def organization_entities(org: Organization) -> list[dict]:
    return [
        {"uid": uid("Organization", org.id), "attrs": {"kind": org.kind, "active": org.active},
         "parents": [uid("OrgKind", org.kind)]},
        {"uid": uid("OrgKind", org.kind), "attrs": {}, "parents": []},
    ]


def user_entities(user: User) -> list[dict]:
    roles = [user.role] + (["portal_admin"] if user.is_portal_admin else [])
    return [
        {"uid": uid("User", user.id),
         "attrs": {"organization": {"__entity": uid("Organization", user.organization_id)},
                   "role": user.role, "portal_admin": bool(user.is_portal_admin)},
         "parents": [uid("Organization", user.organization_id)] + [uid("Role", r) for r in roles]},
        *[{"uid": uid("Role", r), "attrs": {}, "parents": []} for r in roles],
        *organization_entities(user.organization),
    ]


def referral_entities(referral: Referral, now=None) -> list[dict]:
    """The referral as Cedar sees it: its two organizations, assignee and consent state."""
    consent = referral.consent
    active = consent.active_at(now or utcnow()) and referral.status != "revoked"
    return [
        {"uid": uid("Referral", referral.id), "parents": [],
         "attrs": {"sender": {"__entity": uid("Organization", referral.sender_org_id)},
                   "receiver": {"__entity": uid("Organization", referral.receiver_org_id)},
                   "assignees": [{"__entity": uid("User", referral.assigned_to_id)}] if referral.assigned_to_id else [],
                   "consent_active": active,
                   "released": sorted(consent.categories) if active else []}},
        *organization_entities(referral.sender),
        *organization_entities(referral.receiver),
    ]


def resource_entities(resource) -> tuple[dict, list[dict]]:
    """The Cedar uid of a loaded resource and the entities that describe it."""
    if resource is None or resource == PORTAL:
        return PORTAL, [{"uid": PORTAL, "attrs": {}, "parents": []}]
    if isinstance(resource, User):
        return uid("User", resource.id), user_entities(resource)
    if isinstance(resource, Organization):
        return uid("Organization", resource.id), organization_entities(resource)
    if isinstance(resource, Referral):
        return uid("Referral", resource.id), referral_entities(resource)
    raise TypeError(f"no Cedar entity mapping for {type(resource).__name__}")


def merge(*groups: list[dict]) -> list[dict]:
    """Entities by uid, first one wins (the same org may describe principal and resource)."""
    seen: dict[tuple[str, str], dict] = {}
    for group in groups:
        for entity in group:
            seen.setdefault((entity["uid"]["type"], entity["uid"]["id"]), entity)
    return list(seen.values())
