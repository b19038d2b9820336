"""The policy decision point: one Cedar engine per app, one call per decision."""
from __future__ import annotations

import logging

from flask import current_app

from portal.policy.actions import Action
from portal.policy.engine import Decision, PolicyEngine, PolicyError
from portal.policy.entities import merge, resource_entities, uid, user_entities

log = logging.getLogger("portal.policy")

__all__ = ["Action", "Decision", "PolicyEngine", "PolicyError", "decide", "decide_many", "engine"]


def engine() -> PolicyEngine:
    return current_app.extensions["portal.pdp"]


def decide(user, action: Action, resource=None, pdp: PolicyEngine | None = None) -> Decision:
    """May `user` perform `action` on `resource` (None: the portal itself)?"""
    return decide_many(user, [action], resource, pdp)[0]


def decide_many(user, actions, resource=None, pdp: PolicyEngine | None = None) -> list[Decision]:
    """Several actions on one resource in one batch (one entity set, one call)."""
    pdp = pdp or engine()
    resource_uid, resource_group = resource_entities(resource)
    entities = pdp.entities(merge(user_entities(user), resource_group))
    decisions = pdp.decide_many(uid("User", user.id), [(a.value, resource_uid) for a in actions], entities)
    for decision in decisions:
        if decision.errors:  # an erroring evaluation is a denial; say so loudly, it is a policy bug
            log.error("policy evaluation error action=%s errors=%s", decision.action, decision.errors)
    return decisions
