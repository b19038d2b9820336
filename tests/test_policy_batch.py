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
from portal.policy.enumerate import enumerate_decisions
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
    """However many unlike pages a worker decides, it keeps at most ENTITY_CACHE_ENTITIES entities."""
    from portal.policy.engine import ENTITY_CACHE_ENTITIES
    pdp = PolicyEngine(POLICIES)
    north = org("cvi_team")
    staff = user(north)
    for _ in range(60):  # 60 pages of 40 rows from 40 hospitals: ~120 entities a page
        page = [referral(org("hospital_program"), north) for _ in range(40)]
        decide_each(staff, ACTIONS, page, pdp)
    kept = sum(size for _, size in pdp._entity_cache.values())
    assert kept == pdp._cached_entities <= ENTITY_CACHE_ENTITIES
    assert len(pdp._entity_cache) >= 10  # and it does keep the recent ones
