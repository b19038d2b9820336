"""The public page that tells every partner kind what it can and cannot see, from the policies."""
from __future__ import annotations

from collections import defaultdict

from portal.models.organization import ORG_KINDS
from portal.policy.engine import PolicyEngine
from portal.policy.decision_table import enumerate_decisions, schema_actions


def transparency_table(pdp: PolicyEngine) -> dict:
    """kind → action → list of 'who (relation)' allowed; an empty list means never.

    Computed once per loaded policy set: the policies do not change while the process runs.
    """
    if pdp.transparency is None:
        pdp.transparency = _compute(pdp)
    return pdp.transparency


def _compute(pdp: PolicyEngine) -> dict:
    allowed: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for shape, action, _type, relation, decision in enumerate_decisions(pdp):
        if decision.allowed:
            who = f"{shape.label} ({relation})" if relation != "portal" else shape.label
            allowed[shape.kind][action].append(who)
    actions = list(schema_actions(pdp.schema_text))
    return {"actions": actions,
            "kinds": {kind: {a: allowed[kind].get(a, []) for a in actions} for kind in ORG_KINDS}}

