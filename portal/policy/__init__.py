"""The policy decision point: one Cedar engine per app, one call per decision."""
from __future__ import annotations

import logging

from flask import current_app

from portal.policy.actions import Action
from portal.policy.engine import Decision, PolicyEngine, PolicyError
from portal.policy.entities import LEAF_TYPES, facts, graph, resource_uid, uid, user_facts

log = logging.getLogger("portal.policy")

__all__ = ["Action", "Decision", "PolicyEngine", "PolicyError", "decide", "decide_each", "decide_many", "engine"]


def engine() -> PolicyEngine:
    return current_app.extensions["portal.pdp"]


def decide(user, action: Action, resource=None, pdp: PolicyEngine | None = None) -> Decision:
    """May `user` perform `action` on `resource` (None: the portal itself)?"""
    return decide_many(user, [action], resource, pdp)[0]


def decide_many(user, actions, resource=None, pdp: PolicyEngine | None = None) -> list[Decision]:
    """Several actions on one resource in one batch (one entity set, one call)."""
    pdp = pdp or engine()
    key = (user_facts(user), facts(resource))
    entities = pdp.entities_for(key, lambda: graph(*key))
    target = resource_uid(key[1])
    decisions = pdp.decide_many(uid("User", user.id), [(a.value, target) for a in actions], entities)
    _log_errors(decisions)
    return decisions


def decide_each(user, actions, resources, pdp: PolicyEngine | None = None) -> list[list[Decision]]:
    """The same actions on every resource of a page: one entity graph, one batch per action.
    Returns, per resource in order, its decisions in the order of `actions`.

    Rows that Cedar cannot tell apart are decided once: same facts but the id, of a type that
    nothing refers to and no policy names by id (entities.LEAF_TYPES). An inbox holds a few
    such shapes (sender, assignee, consent state), not fifty."""
    described = [facts(resource) for resource in resources]
    if not described:
        return []
    pdp = pdp or engine()
    shapes: dict[tuple, int] = {}
    distinct, shape_of = [], []
    for each in described:
        anonymous = each[0] in LEAF_TYPES and each[0] not in pdp.named_types
        shape = (each[0], *each[2:]) if anonymous else each
        if shape not in shapes:
            shapes[shape] = len(distinct)
            distinct.append(each)
        shape_of.append(shapes[shape])
    key = (user_facts(user), *distinct)
    entities = pdp.entities_for(key, lambda: graph(*key))
    requests = [(a.value, target) for target in map(resource_uid, distinct) for a in actions]
    decisions = pdp.decide_many(uid("User", user.id), requests, entities)
    _log_errors(decisions)
    n = len(actions)
    return [decisions[i * n:(i + 1) * n] for i in shape_of]


def _log_errors(decisions: list[Decision]) -> None:
    for decision in decisions:
        if decision.errors:  # an erroring evaluation is a denial; say so loudly, it is a policy bug
            log.error("policy evaluation error action=%s errors=%s", decision.action, decision.errors)
