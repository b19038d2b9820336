"""What a caller sees of a referral: the fields its decisions allow, and nothing else.

Templates and the API receive the dict built here, never the ORM object. Each field category
is one policy action; the decisions are made in one batch per referral, and personal fields are
decrypted only when their category is allowed. Every decryption for a caller is written to the
audit log: which referral, which category, by whom.
"""
from __future__ import annotations

from portal.audit import trail
from portal.db import utcnow
from portal.policy import Action, decide_each, decide_many
from portal.policy.actions import REFERRAL_VIEWS
from portal.referrals import codes, vault

# Actions whose buttons a referral page may show; decided with the views, in the same batch.
REFERRAL_WORK = (Action.REFERRAL_ACCEPT, Action.REFERRAL_DECLINE, Action.REFERRAL_ASSIGN,
                 Action.REFERRAL_LOG_CONTACT, Action.REFERRAL_HOLD, Action.REFERRAL_RESUME,
                 Action.REFERRAL_COMPLETE, Action.REFERRAL_HANDOFF, Action.REFERRAL_CANCEL,
                 Action.REFERRAL_REVOKE_CONSENT, Action.REFERRAL_DISCLOSURE_REPORT,
                 Action.REFERRAL_VIEW_ACCESS_HISTORY)


def allowed_actions(user, referral, pdp=None) -> set[Action]:
    decisions = decide_many(user, REFERRAL_VIEWS + REFERRAL_WORK, referral, pdp)
    return {action for action, decision in zip(REFERRAL_VIEWS + REFERRAL_WORK, decisions) if decision.allowed}


def allowed_actions_each(user, referrals, pdp=None) -> list[set[Action]]:
    """allowed_actions for every row of a list page, decided as one batch over one entity graph."""
    actions = REFERRAL_VIEWS + REFERRAL_WORK
    return [{action for action, decision in zip(actions, decisions) if decision.allowed}
            for decisions in decide_each(user, actions, referrals, pdp)]


def project_referral(db, ring, user, referral, allowed: set[Action] | None = None, detail: bool = True) -> dict | None:
    """The referral as `user` may see it, or None when they may not see it at all."""
    allowed = allowed_actions(user, referral) if allowed is None else allowed
    if Action.REFERRAL_VIEW_STATUS not in allowed:
        return None
    receiver_side = Action.REFERRAL_VIEW_CONTACT_LOG in allowed
    view = {
        "id": str(referral.id),
        "status": referral.status,
        "status_label": codes.STATUSES[referral.status],
        "fhir_status": codes.FHIR_TASK_STATUS[referral.status],
        "status_reason": referral.status_reason,
        "outcome": referral.outcome,
        "urgency": referral.urgency,
        "zone": referral.zone.code,
        "age_band": referral.age_band,
        "reason": referral.reason,
        "services": referral.services,
        "sender": {"id": str(referral.sender_org_id), "name": referral.sender.name},
        "receiver": {"id": str(referral.receiver_org_id), "name": referral.receiver.name},
        "created_at": referral.created_at.isoformat(),
        "accepted_at": _iso(referral.accepted_at),
        "first_contact_at": _iso(referral.first_contact_at),
        "closed_at": _iso(referral.closed_at),
        "handed_off": bool(referral.children),
        "consent_active": referral.consent.active_at(utcnow()) and referral.status != "revoked"
                          and referral.personal_purged_at is None,
        "allowed": sorted(a.value for a in allowed),
    }
    if receiver_side:
        view["assigned_to"] = ({"id": str(referral.assigned_to_id), "name": referral.assigned_to.display_name}
                               if referral.assigned_to_id else None)
        view["retaliation_risk"] = referral.retaliation_risk
    if not detail:
        if Action.REFERRAL_VIEW_CONTACT in allowed:  # a list row names the person, nothing more
            person = vault.open_person(vault.data_key(db, ring, referral), referral) or {}
            view["preferred_name"] = person.get("preferred_name")
            trail.record(Action.REFERRAL_VIEW_CONTACT, referral, detail={"fields": ["preferred_name"]},
                         actor=user, db=db)
        return view
    view["events"] = [{"at": e.at.isoformat(), "from": e.from_status, "to": e.to_status, "reason": e.reason_code}
                      for e in referral.events]
    wants_personal = allowed & {Action.REFERRAL_VIEW_CONTACT, Action.REFERRAL_VIEW_NOTES, Action.REFERRAL_VIEW_CONTACT_LOG}
    dek = vault.data_key(db, ring, referral) if wants_personal else None
    if Action.REFERRAL_VIEW_CONTACT in allowed:
        view["person"] = vault.open_person(dek, referral)
    if Action.REFERRAL_VIEW_NOTES in allowed:
        view["note"] = vault.open_note(dek, referral)
    if receiver_side:
        view["contact_attempts"] = [
            {"id": str(a.id), "at": a.at.isoformat(), "outcome": a.outcome,
             "worker": a.worker.display_name if a.worker else None, "note": vault.open_contact_note(dek, a)}
            for a in referral.contact_attempts]
    for action in sorted(wants_personal):  # who read which personal fields, one event per category
        trail.record(action, referral, actor=user, db=db)
    return view


def _iso(value):
    return value.isoformat() if value else None
