"""Rows → Cedar entities. The only place that knows how the schema's hierarchy is built.

A user is `in` its Organization and its Role groups (`portal_admin` is a Role group too);
an Organization is `in` its OrgKind. Entities are parsed with the schema, so a missing or
mistyped attribute fails loudly instead of making a policy condition error (and be skipped).

A row is first reduced to its facts: a tuple of exactly the values its entities are built from,
read once from the ORM object. Entities are a pure function of facts, so the engine keeps parsed
graphs by their facts (PolicyEngine.entities_for) and a decision repeated on the same user and
resource neither rebuilds nor re-parses them; a changed value is a different key.
"""
from __future__ import annotations

from portal.db import utcnow
from portal.models import Organization, Referral, User

PORTAL = {"type": "Portal", "id": "portal"}
PORTAL_FACTS = ("Portal",)


def uid(entity_type: str, entity_id) -> dict:
    return {"type": entity_type, "id": str(entity_id)}


# -- facts: what each entity is built from -----------------------------------------------------
def organization_facts(org: Organization) -> tuple:
    return ("Organization", org.id, org.kind, bool(org.active))


def user_facts(user: User) -> tuple:
    return ("User", user.id, user.role, bool(user.is_portal_admin), user.organization_id,
            organization_facts(user.organization))


def referral_facts(referral: Referral, now=None) -> tuple:
    """The referral as Cedar sees it: its two organizations, assignee and consent state."""
    consent = referral.consent
    active = consent.active_at(now or utcnow()) and referral.status != "revoked"
    return ("Referral", referral.id, referral.sender_org_id, referral.receiver_org_id, referral.assigned_to_id,
            active, tuple(sorted(consent.categories)) if active else (),
            organization_facts(referral.sender), organization_facts(referral.receiver))


def facts(resource) -> tuple:
    """The facts of a loaded resource (None: the portal itself)."""
    if resource is None or resource == PORTAL:
        return PORTAL_FACTS
    if isinstance(resource, User):
        return user_facts(resource)
    if isinstance(resource, Organization):
        return organization_facts(resource)
    if isinstance(resource, Referral):
        return referral_facts(resource)
    raise TypeError(f"no Cedar entity mapping for {type(resource).__name__}")


# -- shapes: facts up to the names of their entities -------------------------------------------
class Shaper:
    """The shape of (principal, row): both rows' facts with every entity id replaced by the order
    in which it first appears (the principal's first), except ids of the types in `keep` (those
    some policy names: PolicyEngine.named_types).

    Cedar compares entity ids only with each other (`==`, `in`, `contains`); it has no way to
    read one, order them or match them to a pattern. So two requests of the same shape — the
    same worker's two new referrals from two hospitals, or two workers of two teams each on
    their own team's referral — are the same request up to a renaming of ids that no policy can
    see, and get the same decisions: the same allow and the same determining policies (error
    messages name ids, so a decision with an error is never shared). Entities are a pure
    function of facts, so the shape determines the request entirely."""

    __slots__ = ("keep", "labels", "principal")

    def __init__(self, principal: tuple, keep=frozenset()):
        self.keep = keep
        self.labels: dict = {}
        self.principal = _shape(principal, self.labels, keep)

    def of(self, described: tuple) -> tuple:
        """The shape of the principal with this row (hashable; equal shapes, equal decisions)."""
        if described[0] == "Portal":
            return self.principal, described
        return self.principal, _shape(described, dict(self.labels), self.keep)


_LABEL = object()  # marks a renamed id: equal to no id of a kept type


def _id(labels: dict, keep, entity_type: str, value):
    if value is None or entity_type in keep:
        return value
    return labels.setdefault(value, (_LABEL, len(labels)))


def _shape(described: tuple, labels: dict, keep) -> tuple:
    kind = described[0]
    if kind == "Referral":
        _, referral_id, sender_id, receiver_id, assignee_id, active, released, sender, receiver = described
        return (kind, _id(labels, keep, kind, referral_id), _id(labels, keep, "Organization", sender_id),
                _id(labels, keep, "Organization", receiver_id), _id(labels, keep, "User", assignee_id), active,
                released, _shape(sender, labels, keep), _shape(receiver, labels, keep))
    if kind == "Organization":
        return (kind, _id(labels, keep, kind, described[1]), *described[2:])
    if kind == "User":
        _, user_id, role, portal_admin, org_id, org = described
        return (kind, _id(labels, keep, kind, user_id), role, portal_admin, _id(labels, keep, "Organization", org_id),
                _shape(org, labels, keep))
    if kind == "Portal":
        return described
    raise TypeError(f"no Cedar entities for facts of kind {kind!r}")


# -- entities: a pure function of facts ------------------------------------------------------
def resource_uid(described: tuple) -> dict:
    return PORTAL if described[0] == "Portal" else uid(described[0], described[1])


def entities(described: tuple) -> list[dict]:
    """The entities that describe one row, from its facts alone."""
    kind = described[0]
    if kind == "Portal":
        return [{"uid": PORTAL, "attrs": {}, "parents": []}]
    if kind == "Organization":
        _, org_id, org_kind, active = described
        return [{"uid": uid("Organization", org_id), "attrs": {"kind": org_kind, "active": active},
                 "parents": [uid("OrgKind", org_kind)]},
                {"uid": uid("OrgKind", org_kind), "attrs": {}, "parents": []}]
    if kind == "User":
        _, user_id, role, portal_admin, org_id, org = described
        roles = [role] + (["portal_admin"] if portal_admin else [])
        return [{"uid": uid("User", user_id),
                 "attrs": {"organization": {"__entity": uid("Organization", org_id)}, "role": role,
                           "portal_admin": portal_admin},
                 "parents": [uid("Organization", org_id)] + [uid("Role", r) for r in roles]},
                *[{"uid": uid("Role", r), "attrs": {}, "parents": []} for r in roles],
                *entities(org)]
    if kind == "Referral":
        _, referral_id, sender_id, receiver_id, assignee_id, active, released, sender, receiver = described
        return [{"uid": uid("Referral", referral_id), "parents": [],
                 "attrs": {"sender": {"__entity": uid("Organization", sender_id)},
                           "receiver": {"__entity": uid("Organization", receiver_id)},
                           "assignees": [{"__entity": uid("User", assignee_id)}] if assignee_id else [],
                           "consent_active": active, "released": list(released)}},
                *entities(sender), *entities(receiver)]
    raise TypeError(f"no Cedar entities for facts of kind {kind!r}")


def graph(*described: tuple) -> list[dict]:
    """The entities of several rows, each uid once."""
    return merge(*(entities(each) for each in described))


def user_entities(user: User) -> list[dict]:
    return entities(user_facts(user))


def referral_entities(referral: Referral, now=None) -> list[dict]:
    return entities(referral_facts(referral, now))


def resource_entities(resource) -> tuple[dict, list[dict]]:
    """The Cedar uid of a loaded resource and the entities that describe it."""
    described = facts(resource)
    return resource_uid(described), entities(described)


def merge(*groups: list[dict]) -> list[dict]:
    """Entities by uid, first one wins (the same org may describe principal and resource)."""
    seen: dict[tuple[str, str], dict] = {}
    for group in groups:
        for entity in group:
            seen.setdefault((entity["uid"]["type"], entity["uid"]["id"]), entity)
    return list(seen.values())
