"""`portal policy check`: validate the policies, compare every decision with the reviewed
decision table in policies/tests/, and prove the boundary over every principal shape.

The decision table is a golden file: `portal policy check --write` regenerates it from the
policies, and the change shows up in review as a diff of who may do what.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from portal.policy.engine import PolicyEngine
from portal.policy.decision_table import RELATIONS, enumerate_decisions

TABLE = "decisions.csv"
# Everything a police account may ever be allowed: its own home and account, and the
# administration of its own organization's accounts. Never a referral, never a person.
POLICE_MAY = {"home.view", "account.view_self", "account.sign_out_everywhere", "account.manage_mfa", "account.step_up",
              "org.view", "user.create", "user.manage", "aggregate.view"}
PERSONAL = {"referral.view_contact", "referral.view_notes", "referral.view_contact_log"}


def decision_table(pdp: PolicyEngine) -> str:
    """One row per (kind, role, portal admin, action); one column per relationship."""
    cells: dict[tuple, dict[str, str]] = {}
    for shape, action, resource_type, relation, decision in enumerate_decisions(pdp):
        key = (shape.kind, shape.role, "yes" if shape.portal_admin else "no", action, resource_type)
        cells.setdefault(key, {})[relation] = "allow" if decision.allowed else "-"
    columns = [r for rels in RELATIONS.values() for r in rels if r != "portal"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["kind", "role", "portal_admin", "action", "portal", *columns])
    for key in sorted(cells):
        row = cells[key]
        writer.writerow([*key[:4], row.get("portal", ""), *(row.get(c, "") for c in columns)])
    return out.getvalue()


def boundary_violations(pdp: PolicyEngine) -> list[str]:
    """Counterexamples to the boundary; empty when it holds for every shape and relationship."""
    found = []
    for shape, action, resource_type, relation, decision in enumerate_decisions(pdp):
        if not decision.allowed:
            continue
        who = f"{shape.kind}/{shape.label}"
        if shape.kind == "police_partner" and (action not in POLICE_MAY or resource_type == "Referral"):
            found.append(f"police principal {who} is allowed {action} on {resource_type} ({relation})")
        if (shape.kind == "city_office" or shape.portal_admin) and action in PERSONAL:
            found.append(f"{who} is allowed {action} ({relation}): reads personal fields")
        if resource_type == "Referral" and relation == "unrelated":
            found.append(f"{who} is allowed {action} on a referral it neither sent nor received")
    return found


def check(policy_dir: Path, write: bool = False) -> list[str]:
    """Problems found (empty when all is well). Loading the engine validates against the schema."""
    pdp = PolicyEngine(policy_dir)
    table = decision_table(pdp)
    path = policy_dir / "tests" / TABLE
    problems = boundary_violations(pdp)
    if write:
        path.parent.mkdir(exist_ok=True)
        path.write_text(table)
    elif not path.exists():
        problems.append(f"{path} is missing; run `portal policy check --write` and review it")
    elif path.read_text() != table:
        expected = {tuple(r) for r in csv.reader(io.StringIO(path.read_text()))}
        actual = {tuple(r) for r in csv.reader(io.StringIO(table))}
        for row in sorted(actual - expected)[:10]:
            problems.append(f"decision differs from {TABLE}: now {','.join(row)}")
        for row in sorted(expected - actual)[:10]:
            problems.append(f"decision differs from {TABLE}: table says {','.join(row)}")
    return problems
