"""The PDP's fast paths decide exactly what the plain path decides.

Per-action policy slices, entity graphs kept by their facts, and one batch per page are there
for speed (bench/policy_bench.py); none of them may change a single decision.
"""
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from portal.models import Consent, Organization, Referral, User
from portal.policy import Action, PolicyEngine, decide, decide_each, decide_many
from portal.policy.actions import REFERRAL_VIEWS
from portal.policy.decision_table import enumerate_decisions
from portal.policy.projection import REFERRAL_WORK

POLICIES = Path(__file__).resolve().parent.parent / "policies"
ACTIONS = REFERRAL_VIEWS + REFERRAL_WORK
NOW = datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def pdp():
    return PolicyEngine(POLICIES)


def org(kind):
    return Organization(id=uuid.uuid4(), name=kind, kind=kind, active=True)


def user(organization, role="staff", admin=False):
    return User(id=uuid.uuid4(), role=role, is_portal_admin=admin, organization_id=organization.id,
                organization=organization)


def referral(sender, receiver, assignee=None, categories="contact note", revoked=False):
    consent = Consent(id=uuid.uuid4(), method="verbal", obtained_at=NOW - timedelta(days=1),
                      expires_at=NOW + timedelta(days=30), data_categories=categories,
                      revoked_at=NOW if revoked else None)
    return Referral(id=uuid.uuid4(), sender_org_id=sender.id, receiver_org_id=receiver.id, sender=sender,
                    receiver=receiver, consent=consent, status="sent",
                    assigned_to_id=assignee.id if assignee else None)


def normal(decisions):
    """Decisions comparable across calls: Cedar reports the determining policies in no set order."""
    out = []
    for each in decisions:
        decision = each[-1] if isinstance(each, tuple) else each
        out.append((*(each[:-1] if isinstance(each, tuple) else ()), decision.allowed, decision.action,
                    frozenset(decision.policy_ids), decision.errors))
    return out


def test_slices_decide_like_the_whole_policy_set():
    """Every principal shape × action × relationship: the per-action slices give the same allow,
    the same determining policies and the same errors as evaluating every policy."""
    sliced = PolicyEngine(POLICIES)
    assert sliced.slices, "the schema declares no action groups, so slices are on"
    whole = PolicyEngine(POLICIES)
    whole.slices = {}
    assert sliced.slices["referral.accept"] is not sliced.policy_set
    assert normal(enumerate_decisions(sliced)) == normal(enumerate_decisions(whole))


def test_action_groups_turn_slicing_off(tmp_path):
    """An action group in the schema would make a literal action scope incomplete: no slices then."""
    for path in POLICIES.glob("*.cedar"):
        (tmp_path / path.name).write_text(path.read_text())
    schema = (POLICIES / "schema.cedarschema").read_text()
    schema += '\naction "referral.work_group" appliesTo { principal: User, resource: Referral };\n'
    schema = schema.replace('action "referral.hold" appliesTo',
                            'action "referral.hold" in ["referral.work_group"] appliesTo')
    (tmp_path / "schema.cedarschema").write_text(schema)
    assert PolicyEngine(tmp_path).slices == {}


def test_a_page_batch_decides_like_one_referral_at_a_time(pdp):
    """decide_each over a mixed page equals decide_many on each referral, for every principal."""
    hospital, north, east, provider = org("hospital_program"), org("cvi_team"), org("cvi_team"), \
        org("service_provider")
    staff, other = user(north), user(north)
    page = [referral(hospital, north), referral(hospital, north, staff), referral(hospital, north, other),
            referral(hospital, north, categories="contact"), referral(hospital, north, revoked=True),
            referral(hospital, east), referral(north, provider),
            referral(hospital, north), referral(hospital, north, staff)]  # same shapes as the first two
    principals = [staff, user(north, "supervisor"), user(hospital), user(east, "org_admin"), user(provider),
                  user(org("city_office"), "org_admin"), user(org("police_partner")),
                  user(hospital, admin=True)]
    allowed_somewhere = 0
    for principal in principals:
        batched = decide_each(principal, ACTIONS, page, pdp)
        one_by_one = [decide_many(principal, ACTIONS, r, pdp) for r in page]
        assert [normal(row) for row in batched] == [normal(row) for row in one_by_one]
        allowed_somewhere += sum(d.allowed for row in batched for d in row)
    assert allowed_somewhere > 50  # the comparison is not between two walls of denials
    assert decide_each(staff, ACTIONS, [], pdp) == []


def test_a_changed_fact_is_never_answered_from_the_cache(pdp):
    """The same ORM objects, changed between two decisions: the second sees the change."""
    hospital, north = org("hospital_program"), org("cvi_team")
    staff, other = user(north), user(north)
    r = referral(hospital, north)
    assert decide(staff, Action.REFERRAL_VIEW_CONTACT, r, pdp).allowed
    r.consent.revoked_at = NOW
    assert not decide(staff, Action.REFERRAL_VIEW_CONTACT, r, pdp).allowed
    r.consent.revoked_at = None
    assert decide(staff, Action.REFERRAL_ACCEPT, r, pdp).allowed
    r.assigned_to_id = other.id
    assert not decide(staff, Action.REFERRAL_ACCEPT, r, pdp).allowed
    staff.role = "supervisor"
    assert decide(staff, Action.REFERRAL_ACCEPT, r, pdp).allowed
    north.kind = "police_partner"
    assert not decide(staff, Action.REFERRAL_ACCEPT, r, pdp).allowed


def test_a_referral_named_by_a_policy_is_decided_on_its_own(tmp_path):
    """Rows of the same shape share their decisions only while no policy names one of them."""
    hospital, north = org("hospital_program"), org("cvi_team")
    staff = user(north)
    plain, named = referral(hospital, north), referral(hospital, north)
    for path in POLICIES.glob("*"):
        if path.is_file():
            (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "zz_named.cedar").write_text(
        f'@id("test.one-referral-closed")\nforbid (principal, action, resource == Referral::"{named.id}");\n')
    pdp = PolicyEngine(tmp_path)
    assert "Referral" in pdp.named_types
    plain_row, named_row = decide_each(staff, ACTIONS, [plain, named], pdp)
    assert plain_row[0].allowed and not any(d.allowed for d in named_row)
    assert PolicyEngine(POLICIES).named_types.isdisjoint({"Referral", "User", "Organization"})


def test_the_parsed_graphs_kept_stay_within_their_budget():
    """However many unlike graphs a worker parses, it keeps at most ENTITY_CACHE_ENTITIES entities."""
    from portal.policy.engine import ENTITY_CACHE_ENTITIES
    from portal.policy.entities import facts, graph, user_facts
    pdp = PolicyEngine(POLICIES)
    north = org("cvi_team")
    staff = user(north)
    for _ in range(60):  # 60 pages of 40 rows from 40 hospitals: ~120 entities a page
        key = (user_facts(staff), *(facts(referral(org("hospital_program"), north)) for _ in range(40)))
        pdp.entities_for(key, lambda: graph(*key))
    kept = sum(size for _, size in pdp._entity_cache.values())
    assert kept == pdp._cached_entities <= ENTITY_CACHE_ENTITIES
    assert len(pdp._entity_cache) >= 10  # and it does keep the recent ones


def test_action_classes_decide_like_each_action_on_its_own():
    """Actions that the same policies decide are evaluated once; every principal shape × action ×
    relationship gets the same allow, determining policies and errors as deciding each action."""
    classed = PolicyEngine(POLICIES)
    assert classed.classes["referral.hold"] == classed.classes["referral.accept"]
    assert classed.classes["referral.view_contact"] != classed.classes["referral.view_notes"]
    alone = PolicyEngine(POLICIES)
    alone.classes = {}
    assert normal(enumerate_decisions(classed)) == normal(enumerate_decisions(alone))


def test_a_condition_reading_the_action_keeps_it_out_of_any_class(tmp_path):
    for path in POLICIES.glob("*"):
        if path.is_file():
            (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "zz_hold.cedar").write_text(
        '@id("test.no-hold-for-staff")\nforbid (principal in Role::"staff", action, resource is Referral)\n'
        'when { action == Action::"referral.hold" };\n')
    pdp = PolicyEngine(tmp_path)
    assert pdp.classes["referral.hold"] == "referral.hold"
    north = org("cvi_team")
    staff = user(north)
    r = referral(org("hospital_program"), north)
    hold, accept = decide_many(staff, [Action.REFERRAL_HOLD, Action.REFERRAL_ACCEPT], r, pdp)
    assert accept.allowed and not hold.allowed and "test.no-hold-for-staff" in hold.policy_ids


def relationships(staff, other, north, east, hospital, provider):
    """One referral of every relationship a principal can have to it, each with new ids."""
    return [referral(hospital, north), referral(hospital, north, staff), referral(hospital, north, other),
            referral(hospital, north, categories="contact"), referral(hospital, north, categories="note"),
            referral(hospital, north, revoked=True), referral(hospital, east), referral(north, provider),
            referral(north, hospital, staff), referral(provider, north), referral(org("hospital_program"), north)]


def test_remembered_decisions_equal_cedar_evaluating_each_request():
    """A request answered from the decisions of its shape gets what Cedar gives it fresh: for every
    principal, a second set of referrals (new ids, new hospitals, the same relationships) decided
    by an engine that has seen the first set equals the same decided by an engine that has not."""
    warm = PolicyEngine(POLICIES)
    hospital, north, east, provider = org("hospital_program"), org("cvi_team"), org("cvi_team"), \
        org("service_provider")
    staff, other = user(north), user(north)
    principals = [staff, user(north, "supervisor"), user(north, "org_admin"), user(hospital), user(east, "org_admin"),
                  user(provider), user(org("city_office"), "org_admin"), user(org("police_partner")),
                  user(hospital, admin=True), user(north, admin=True)]
    for principal in principals:
        decide_each(principal, ACTIONS, relationships(staff, other, north, east, hospital, provider), warm)
    assert warm._decisions, "the first set was remembered"
    second = relationships(staff, other, north, east, hospital, provider)
    allowed = 0
    for principal in principals:
        fresh = PolicyEngine(POLICIES)
        fresh.classes = {}
        remembered = [decide_many(principal, ACTIONS, r, warm) for r in second]
        evaluated = [fresh.decide_many(*request_of(principal, r)) for r in second]
        assert [normal(row) for row in remembered] == [normal(row) for row in evaluated]
        assert decide_each(principal, ACTIONS, second, warm) == remembered
        allowed += sum(d.allowed for row in remembered for d in row)
    assert allowed > 60


def request_of(principal, resource):
    """The plain path: the principal's and the resource's own entities, every action evaluated."""
    from portal.policy.entities import facts, graph, resource_uid, uid, user_facts
    fresh = PolicyEngine(POLICIES)
    described = facts(resource)
    return (uid("User", principal.id), [(a.value, resource_uid(described)) for a in ACTIONS],
            fresh.entities(graph(user_facts(principal), described)))


def test_two_rows_of_one_shape_are_one_evaluation(pdp):
    """Rows from two hospitals the worker has no tie to are one shape; the worker's own
    organization sending is another; an assignee other than the worker is a third."""
    from portal.policy.entities import Shaper, facts, user_facts
    hospital, hospital2, north = org("hospital_program"), org("hospital_program"), org("cvi_team")
    staff, other = user(north), user(north)
    shaper = Shaper(user_facts(staff), pdp.named_types)
    a, b = referral(hospital, north), referral(hospital2, north)
    assert shaper.of(facts(a)) == shaper.of(facts(b))
    assert shaper.of(facts(a)) != shaper.of(facts(referral(north, hospital)))
    assert shaper.of(facts(referral(hospital, north, staff))) != shaper.of(facts(referral(hospital, north, other)))
    assert shaper.of(facts(a)) != shaper.of(facts(referral(org("service_provider"), north)))
    assert Shaper(user_facts(user(north, "supervisor")), pdp.named_types).of(facts(a)) != shaper.of(facts(a))


def test_a_decision_with_an_error_is_never_remembered(pdp):
    from portal.policy.engine import Decision
    pdp.remember(("form",), [Decision(False, "referral.accept", (), ("entity does not exist",)),
                             Decision(True, "referral.view_status", ("p",), ())])
    assert set(pdp.remembered(("form",))) == {"referral.view_status"}


def test_the_remembered_shapes_stay_within_their_budget(monkeypatch):
    import sys
    # sys.modules: `portal.policy.engine` as an attribute is the package's engine() function
    monkeypatch.setattr(sys.modules["portal.policy.engine"], "DECISION_CACHE_SHAPES", 5)
    pdp = PolicyEngine(POLICIES)
    north = org("cvi_team")
    for kind in ("hospital_program", "cvi_team", "service_provider"):
        for role in ("staff", "supervisor", "org_admin"):
            decide(user(north, role), Action.REFERRAL_ACCEPT, referral(org(kind), north), pdp)
    assert len(pdp._decisions) == 5
