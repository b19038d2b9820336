"""The policy decision point: one Cedar engine per app, one call per decision."""
from __future__ import annotations

import logging

from flask import current_app

from portal.policy.actions import Action
from portal.policy.engine import Decision, PolicyEngine, PolicyError
from portal.policy.entities import merge, resource_entities, uid, user_entities

log = logging.getLogger("portal.policy")

__all__ = ["Action", "Decision", "PolicyEngine", "PolicyError", "decide", "engine"]


def engine() -> PolicyEngine:
    return current_app.extensions["portal.pdp"]


def decide(user, action: Action, resource=None, pdp: PolicyEngine | None = None) -> Decision:
    """May `user` perform `action` on `resource` (None: the portal itself)?"""
    pdp = pdp or engine()
    resource_uid, resource_group = resource_entities(resource)
    entities = pdp.entities(merge(user_entities(user), resource_group))
    decision = pdp.decide(uid("User", user.id), action.value, resource_uid, entities)
    if decision.errors:
        # An erroring evaluation is a denial; say so loudly, it means a policy or entity bug.
        log.error("policy evaluation error action=%s errors=%s", action.value, decision.errors)
    return decision
