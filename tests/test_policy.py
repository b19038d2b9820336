"""The policy decision point: schema drift, fail-closed decisions, start-up refusal, the boundary."""
import shutil
from pathlib import Path

import pytest

from portal.config import ROOT
from portal.policy import Action, PolicyEngine, PolicyError
from portal.policy.decision_table import enumerate_decisions, schema_actions
from portal.policy.gate import declared_action, is_public

POLICIES = ROOT / "policies"
# The short, reviewed list of endpoints open without a declared action.
PUBLIC_ENDPOINTS = {"static", "auth.login", "auth.logout", "home.healthz", "home.transparency"}
# Reached signed out, from the login page or a link in a mail (auth/recovery_views.py).
PUBLIC_ENDPOINTS |= {"recovery.forgot", "recovery.forgot_sent", "recovery.invitation", "recovery.reset",
                     "recovery.new_password"}
# Single sign-on: the work e-mail form, the hop to the organization's provider, its callback.
PUBLIC_ENDPOINTS |= {"sso.choose", "sso.start", "sso.callback"}
# The second sign-in step, reached with only the pending marker the password step leaves (auth/flow.py).
PUBLIC_ENDPOINTS |= {"auth.login_code", "auth.login_enroll"}


@pytest.fixture
def policy_dir(tmp_path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


def test_action_enum_mirrors_the_schema():
    """Every Action is declared in the schema and every schema action is an Action."""
    declared = set(schema_actions((POLICIES / "schema.cedarschema").read_text()))
    assert declared == {a.value for a in Action}


def test_every_endpoint_declares_an_action(app):
    """Walk app.url_map: an endpoint without a declared action is a failure, unless allow-listed."""
    undeclared = sorted(
        rule.endpoint for rule in app.url_map.iter_rules()
        if rule.endpoint not in PUBLIC_ENDPOINTS and declared_action(app.view_functions[rule.endpoint]) is None
    )
    assert undeclared == []
    exempt = {rule.endpoint for rule in app.url_map.iter_rules() if is_public(app.view_functions[rule.endpoint])}
    assert exempt <= PUBLIC_ENDPOINTS


def test_endpoint_without_action_is_refused_at_request_time(app, client, make):
    """Default deny: a view added without @require answers 404 even to a signed-in admin."""
    app.add_url_rule("/forgotten", "forgotten", lambda: "secret data")
    from tests.conftest import login
    login(client, make.user(make.org("city_office"), role="org_admin", portal_admin=True).email)
    response = client.get("/forgotten")
    assert response.status_code == 404 and "secret data" not in response.get_data(as_text=True)


def test_decisions_name_the_policies_that_decided():
    pdp = PolicyEngine(POLICIES)
    decisions = {(s.kind, s.role, s.portal_admin, a, rel): d for s, a, _t, rel, d in enumerate_decisions(pdp)}
    admin_list = decisions[("city_office", "staff", True, "org.list", "portal")]
    assert admin_list.allowed and admin_list.policy_ids == ("administration.portal-admin",)
    police = decisions[("police_partner", "org_admin", True, "referral.view_status", "receiver, unassigned")]
    assert not police.allowed and "boundary.police-never-touch-a-referral" in police.policy_ids


def test_boundary_holds_for_every_principal_shape():
    """No police, city-office or portal-admin principal may do anything to a referral."""
    pdp = PolicyEngine(POLICIES)
    for shape, action, resource_type, relation, decision in enumerate_decisions(pdp):
        if resource_type == "Referral" and (shape.kind in ("police_partner", "city_office") or shape.portal_admin):
            assert not decision.allowed, (shape, action, relation)


def test_boundary_forbid_overrides_a_permit_added_later(policy_dir):
    """Even a careless permit for police on referrals is overridden by the boundary's forbid."""
    (policy_dir / "careless.cedar").write_text(
        '@id("careless.everyone-reads-referrals")\npermit (principal, action, resource is Referral);\n')
    pdp = PolicyEngine(policy_dir)
    for shape, action, resource_type, relation, decision in enumerate_decisions(pdp):
        if resource_type == "Referral" and shape.kind == "police_partner":
            assert not decision.allowed
            assert "boundary.police-never-touch-a-referral" in decision.policy_ids
    # the careless permit does apply elsewhere, so the test would notice if it never loaded
    assert any(d.allowed for s, a, t, r, d in enumerate_decisions(pdp) if t == "Referral" and s.kind == "cvi_team")


def test_a_condition_that_errors_denies(policy_dir):
    """Cedar skips an erroring policy; the PDP treats any evaluation error as deny."""
    (policy_dir / "erroring.cedar").write_text(
        '@id("erroring.permit-with-bad-arithmetic")\n'
        'permit (principal, action == Action::"org.list", resource)\n'
        'when { 9223372036854775807 + (if principal.portal_admin then 1 else 1) > 0 };\n')
    pdp = PolicyEngine(policy_dir)
    for shape, action, _t, _r, decision in enumerate_decisions(pdp):
        if action == "org.list" and not shape.portal_admin:
            assert decision.errors, "the policy was meant to error"
            assert not decision.allowed
        if action == "org.list" and shape.portal_admin:
            # another policy allows, but an error in the evaluation still denies (fail closed)
            assert not decision.allowed


@pytest.mark.parametrize("content, expected", [
    ('@id("x.one")\npermit (principal, action, resource);\n\n@id("x.two")\npermit (principal, action, resource)\nwhen { 1 + };\n',
     "bad.cedar:4:"),
    ('// a comment; with a semicolon\n\npermit (principal, action, resource);\n', "bad.cedar:3: policy has no @id"),
    ('@id("x.typo")\npermit (principal, action == Action::"org.lsit", resource);\n', "bad.cedar:1: x.typo:"),
    ('@id("x.attr")\npermit (principal, action == Action::"org.list", resource)\nwhen { principal.no_such_attr };\n',
     "bad.cedar:1: x.attr:"),
    ('@id("accounts.home")\npermit (principal, action, resource);\n', "duplicate policy id 'accounts.home'"),
])
def test_invalid_policy_refuses_start_with_file_and_line(policy_dir, content, expected):
    """A syntax error, a missing @id, an unknown action, an unknown attribute or a duplicate id: refused."""
    (policy_dir / "bad.cedar").write_text(content)
    with pytest.raises(PolicyError, match=expected.replace(".", r"\.")):
        PolicyEngine(policy_dir)


def test_app_refuses_to_start_on_invalid_policy(policy_dir, database_url, tmp_path):
    from tests.conftest import make_test_app
    (policy_dir / "bad.cedar").write_text('@id("x")\npermit (principal, action, resource) when { ;\n')
    with pytest.raises(PolicyError, match="bad.cedar:1"):
        make_test_app(database_url, tmp_path, PORTAL_POLICY_DIR=str(policy_dir))


def test_transparency_page_is_public_and_computed_from_policies(client):
    """Anyone can read who may do what; the police row says never for every referral action."""
    body = client.get("/transparency").get_data(as_text=True)
    police = body.split('id="kind-police_partner"')[1].split("</section>")[0]
    for action in ("referral.view_status", "referral.view_contact", "referral.view_notes"):
        row = police.split(f"<code>{action}</code>")[1].split("</tr>")[0]
        assert "never" in row


def test_policy_check_passes_on_the_shipped_policies():
    """The shipped policies validate, match the reviewed decision table, and keep the boundary."""
    from portal.policy.check import check
    assert check(POLICIES) == []


def test_policy_check_catches_a_weakened_boundary(policy_dir):
    """Delete the boundary and add a permit for police on referrals: a counterexample is reported."""
    from portal.policy.check import check
    (policy_dir / "boundary.cedar").unlink()
    (policy_dir / "oops.cedar").write_text(
        '@id("oops.police-help")\npermit (principal in OrgKind::"police_partner", '
        'action == Action::"referral.view_contact", resource);\n')
    problems = check(policy_dir)
    assert any(p.startswith("police principal police_partner/staff is allowed referral.view_contact on Referral")
               for p in problems), problems[:5]


def test_policy_check_reports_a_changed_decision(policy_dir):
    """A permit that widens access changes the table: the diff names the row."""
    from portal.policy.check import check
    (policy_dir / "wider.cedar").write_text(
        '@id("wider.staff-assign")\npermit (principal in Role::"staff", action == Action::"referral.assign", resource)\n'
        'when { principal in resource.receiver };\n')
    problems = check(policy_dir)
    assert any("now cvi_team,staff,no,referral.assign" in p for p in problems), problems


def test_decision_table_spot_checks_match_the_rules_in_design():
    """Independent of the golden file: a few rows read straight from DESIGN.md's table."""
    pdp = PolicyEngine(POLICIES)
    d = {(s.kind, s.role, s.portal_admin, a, r): x.allowed for s, a, _t, r, x in enumerate_decisions(pdp)}
    assert d[("hospital_program", "staff", False, "referral.view_status", "sender")]
    assert not d[("hospital_program", "staff", False, "referral.view_notes", "sender")]
    assert not d[("hospital_program", "staff", False, "referral.view_contact_log", "sender")]
    assert d[("cvi_team", "staff", False, "referral.view_contact", "receiver, unassigned")]
    assert not d[("cvi_team", "staff", False, "referral.view_contact", "receiver, assigned to another")]
    assert d[("cvi_team", "supervisor", False, "referral.view_contact", "receiver, assigned to another")]
    assert not d[("cvi_team", "org_admin", False, "referral.view_contact", "receiver, consent ended")]
    assert not d[("service_provider", "org_admin", False, "referral.view_status", "unrelated")]
    assert not any(v for (kind, *_rest), v in d.items() if kind == "police_partner" and "referral" in _rest[2])
