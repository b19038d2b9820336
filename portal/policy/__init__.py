"""The policy decision point: one Cedar engine per app, one call per decision."""
from __future__ import annotations

import logging

from flask import current_app

from portal.policy.actions import Action
from portal.policy.engine import Decision, PolicyEngine, PolicyError
from portal.policy.entities import Shaper, facts, graph, resource_uid, uid, user_facts

log = logging.getLogger("portal.policy")

__all__ = ["Action", "Decision", "PolicyEngine", "PolicyError", "decide", "decide_each", "decide_many", "engine"]


def engine() -> PolicyEngine:
    return current_app.extensions["portal.pdp"]


def decide(user, action: Action, resource=None, pdp: PolicyEngine | None = None) -> Decision:
    """May `user` perform `action` on `resource` (None: the portal itself)?"""
    return decide_many(user, [action], resource, pdp)[0]


def decide_many(user, actions, resource=None, pdp: PolicyEngine | None = None) -> list[Decision]:
    """Several actions on one resource in one batch (one entity set, one call).

    A request of a shape decided before (entities.Shaper) is answered from the engine's
    decisions of that shape; the rest are evaluated by Cedar, and remembered."""
    pdp = pdp or engine()
    key = (user_facts(user), facts(resource))
    form = Shaper(key[0], pdp.named_types).of(key[1])
    known = pdp.remembered(form)
    decisions = [known.get(a.value) for a in actions]
    missing = [a for a, d in zip(actions, decisions) if d is None]
    if missing:
        entities = pdp.entities_for(key, lambda: graph(*key))
        target = resource_uid(key[1])
        fresh = iter(pdp.decide_many(uid("User", user.id), [(a.value, target) for a in missing], entities))
        decisions = [d or next(fresh) for d in decisions]
        _log_errors(decisions)
        pdp.remember(form, decisions)
    return decisions


def decide_each(user, actions, resources, pdp: PolicyEngine | None = None) -> list[list[Decision]]:
    """The same actions on every resource of a page. Returns, per resource in order, its
    decisions in the order of `actions`.

    Rows that Cedar cannot tell apart are decided once: rows of the same shape (entities.Shaper:
    the same facts up to ids no policy names). An inbox holds a few such shapes (sender's kind,
    assignee, consent state), not fifty, however many hospitals it comes from; a shape decided
    before is answered from the engine's decisions, and the rest are evaluated over one graph,
    one Cedar batch per action class."""
    described = [facts(resource) for resource in resources]
    if not described:
        return []
    pdp = pdp or engine()
    principal = user_facts(user)
    shaper = Shaper(principal, pdp.named_types)
    names = [a.value for a in actions]
    rows: dict[tuple, list[Decision] | None] = {}
    forms, unknown = [], []
    for each in described:
        form = shaper.of(each)
        forms.append(form)
        if form not in rows:
            known = pdp.remembered(form)
            row = [known.get(name) for name in names]
            rows[form] = None if None in row else row
            if rows[form] is None:
                unknown.append((form, each))
    if unknown:
        key = (principal, *(each for _, each in unknown))
        entities = pdp.entities_for(key, lambda: graph(*key))
        requests = [(name, resource_uid(each)) for _, each in unknown for name in names]
        decisions = pdp.decide_many(uid("User", user.id), requests, entities)
        _log_errors(decisions)
        n = len(names)
        for i, (form, _) in enumerate(unknown):
            rows[form] = decisions[i * n:(i + 1) * n]
            pdp.remember(form, rows[form])
    return [list(rows[form]) for form in forms]


def _log_errors(decisions: list[Decision]) -> None:
    for decision in decisions:
        if decision.errors:  # an erroring evaluation is a denial; say so loudly, it is a policy bug
            log.error("policy evaluation error action=%s errors=%s", decision.action, decision.errors)
