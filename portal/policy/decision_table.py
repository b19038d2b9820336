"""Every principal shape against every action and relationship, decided by the real engine.

Used by the public transparency page and by `portal policy check`, so that what the portal
says it allows is computed from the policies, never written by hand.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product

from portal.models.organization import ORG_KINDS
from portal.models.user import ROLES
from portal.policy.engine import PolicyEngine
from portal.policy.entities import PORTAL, uid

_ACTION_RE = re.compile(r'action\s+"([^"]+)"\s+appliesTo\s*\{[^}]*resource:\s*(\w+)')

# How a principal can stand to a resource of each type.
RELATIONS = {
    "Portal": ("portal",),
    "Organization": ("own organization", "other organization"),
    "User": ("self", "same organization", "other organization"),
    "Referral": ("sender", "receiver, unassigned", "receiver, assigned to them", "receiver, assigned to another",
                 "receiver, consent ended", "unrelated"),
}


def schema_actions(schema_text: str) -> dict[str, str]:
    """action name → resource type, read from the schema's declarations."""
    return dict(_ACTION_RE.findall(schema_text))


@dataclass(frozen=True)
class Shape:
    kind: str
    role: str
    portal_admin: bool

    @property
    def label(self) -> str:
        return f"{self.role}{' + portal admin' if self.portal_admin else ''}"


def shapes():
    for kind, role, admin in product(ORG_KINDS, ROLES, (False, True)):
        yield Shape(kind, role, admin)


def _org(org_id: str, kind: str) -> list[dict]:
    return [{"uid": uid("Organization", org_id), "attrs": {"kind": kind, "active": True},
             "parents": [uid("OrgKind", kind)]},
            {"uid": uid("OrgKind", kind), "attrs": {}, "parents": []}]


def _user(user_id: str, org_id: str, role: str, admin: bool) -> list[dict]:
    roles = [role] + (["portal_admin"] if admin else [])
    return [{"uid": uid("User", user_id),
             "attrs": {"organization": {"__entity": uid("Organization", org_id)}, "role": role, "portal_admin": admin},
             "parents": [uid("Organization", org_id)] + [uid("Role", r) for r in roles]},
            *[{"uid": uid("Role", r), "attrs": {}, "parents": []} for r in roles]]


def _scenario(shape: Shape, resource_type: str, relation: str) -> tuple[list[dict], dict]:
    """Entities for the principal `me` in org `mine`, and the resource standing in `relation`."""
    entities = _org("mine", shape.kind) + _org("other", "cvi_team" if shape.kind != "cvi_team" else "hospital_program")
    entities += _user("me", "mine", shape.role, shape.portal_admin)
    if resource_type == "Portal":
        return entities + [{"uid": PORTAL, "attrs": {}, "parents": []}], PORTAL
    if resource_type == "Organization":
        return entities, uid("Organization", "mine" if relation == "own organization" else "other")
    if resource_type == "User":
        if relation == "self":
            return entities, uid("User", "me")
        org = "mine" if relation == "same organization" else "other"
        return entities + _user("them", org, "staff", False), uid("User", "them")
    if resource_type == "Referral":
        if relation == "sender":
            sender, receiver = "mine", "other"
        elif relation == "unrelated":
            entities += _org("third", "service_provider")
            sender, receiver = "other", "third"
        else:
            sender, receiver = "other", "mine"
        assignees = {"receiver, assigned to them": [uid("User", "me")],
                     "receiver, assigned to another": [uid("User", "colleague")]}.get(relation, [])
        active = relation != "receiver, consent ended"
        referral = {"uid": uid("Referral", "r"), "parents": [],
                    "attrs": {"sender": {"__entity": uid("Organization", sender)},
                              "receiver": {"__entity": uid("Organization", receiver)},
                              "assignees": [{"__entity": a} for a in assignees],
                              "consent_active": active,
                              "released": ["contact", "note"] if active else []}}
        return entities + [referral], uid("Referral", "r")
    raise ValueError(f"no scenario for resource type {resource_type}")


def enumerate_decisions(pdp: PolicyEngine):
    """Yield (shape, action, resource type, relation, decision) for every combination.

    One entity set per scenario, and one batched call for all the actions on that resource type.
    """
    by_type: dict[str, list[str]] = {}
    for action, resource_type in schema_actions(pdp.schema_text).items():
        by_type.setdefault(resource_type, []).append(action)
    for shape in shapes():
        for resource_type, actions in by_type.items():
            for relation in RELATIONS[resource_type]:
                entity_list, resource = _scenario(shape, resource_type, relation)
                decisions = pdp.decide_many(uid("User", "me"), [(a, resource) for a in actions],
                                            pdp.entities(entity_list))
                for action, decision in zip(actions, decisions):
                    yield shape, action, resource_type, relation, decision
