"""The referral workflow: every rule about what may happen to a referral lives here.

Services take the session, the key ring, the policy engine and the actor; they never commit and
never read the request. The PDP has already decided that the actor may attempt the action on
this referral (views and the API use `@require`); this module decides whether the referral's
state allows it, and raises ConflictError (409) when it does not.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, inspect, select
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from portal.crypto import KeyRing
from portal.db import utcnow
from portal.errors import ConflictError, ServiceError, ValidationFailed
from portal.models import (Consent, ContactAttempt, Organization, Referral, ReferralEvent, ReferralService,
                           User, Zone, consent_recipients)
from portal.policy import Action, PolicyEngine, decide
from portal import notify
from portal.referrals import codes, vault
from portal.referrals.inputs import ConsentInput, ReferralInput

# verb → (statuses it may start from, status it leads to, what it requires)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "accept": (("sent",), "accepted"),
    "decline": (("sent",), "declined"),
    "start": (("accepted",), "in_progress"),
    "hold": (("in_progress",), "on_hold"),
    "resume": (("on_hold",), "in_progress"),
    "complete": (("accepted", "in_progress", "on_hold"), "completed"),
    "cancel": (("sent", "accepted"), "cancelled"),
    "revoke": (codes.OPEN_STATUSES, "revoked"),
}
REASONS_FOR = {"decline": codes.DECLINE_REASONS, "hold": codes.HOLD_REASONS, "cancel": codes.CANCEL_REASONS}
WORKING_STATUSES = ("accepted", "in_progress", "on_hold")
CONSENT_PURPOSE = Consent.__table__.c.purpose.default.arg  # the column's default: the only purpose yet


@dataclass
class Context:
    """What every workflow call needs besides its arguments."""

    db: Session
    ring: KeyRing
    pdp: PolicyEngine
    actor: User | None  # None only for system jobs, which never pass through a view
    now: datetime | None = None
    notify: bool = True  # demo history turns the outbox off

    def __post_init__(self):
        self.now = self.now or utcnow()


# -- sending ---------------------------------------------------------------------------------
def directory(db: Session) -> list[Organization]:
    """Organizations that take part in the exchange, with their zones and intake status."""
    return list(db.scalars(select(Organization)
                           .where(Organization.kind.in_(codes.EXCHANGE_KINDS), Organization.active.is_(True))
                           .order_by(Organization.kind, Organization.name)).unique())


def create_referral(ctx: Context, data: ReferralInput, parent: Referral | None = None,
                    consent: Consent | None = None, referral_id: uuid.UUID | None = None) -> Referral:
    """Send a referral under a new consent (or, for a handoff, an existing one).

    Refused, with nothing written: a receiver the actor may not send to, a receiver the consent
    does not name, an expired consent, an unknown zone. The rows are then written at once and
    the returned referral holds everything a projection reads (see `_insert_loaded`).
    """
    db = ctx.db
    may_send: dict = {}  # organization id → the actor may send to it (decided once per request)
    wanted = {data.receiver_org_id} if data.receiver_org_id else set()
    if consent is None and data.consent is not None:
        wanted.update(data.consent.recipient_org_ids)
    orgs, zone = _organizations(db, wanted, data.zone.upper())
    receiver = orgs.get(data.receiver_org_id)
    if receiver is None or not _may_send_to(ctx, receiver, may_send):
        raise ValidationFailed({"receiver_org_id": "Choose an organization that takes referrals."})
    if zone is None:
        raise ValidationFailed({"zone": "Not a known zone."})
    new_consent = consent is None
    if new_consent:
        consent = _new_consent(ctx, data.consent, orgs, may_send)
    if not consent.active_at(ctx.now):
        raise ValidationFailed({"consent": "The consent is not in force; record a new one."})
    if not consent.names(receiver.id):
        raise ValidationFailed({"consent.recipient_org_ids": "The person's consent does not name this receiver."})

    referral_id = referral_id or uuid.uuid4()
    referral = Referral(id=referral_id, sender_org_id=ctx.actor.organization_id, receiver_org_id=receiver.id,
                        created_by_id=ctx.actor.id, assigned_to_id=None, consent_id=consent.id,
                        parent_id=parent.id if parent else None, status="sent", status_reason=None, outcome=None,
                        urgency=data.urgency, zone_id=zone.id, age_band=data.age_band, reason=data.reason,
                        retaliation_risk=False, personal_purged_at=None, created_at=ctx.now, accepted_at=None,
                        first_contact_at=None, closed_at=None, updated_at=ctx.now, version=1,
                        sender=ctx.actor.organization, receiver=receiver, consent=consent, zone=zone,
                        children=[], contact_attempts=[])
    referral._services = [ReferralService(referral_id=referral_id, service=s) for s in data.services]
    vault.seal(db, ctx.ring, referral, data.person, data.note, ctx.now)
    referral.events = [_new_event(ctx, referral, None, "sent")]
    rows = ([consent, *_recipient_rows(consent)] if new_consent else []) + \
        [referral, *referral._services, *referral.events, referral.data_key]
    _insert_loaded(db, rows)
    if parent is not None and "children" in parent.__dict__:  # a loaded list stays true
        set_committed_value(parent, "children", [*parent.children, referral])
    if ctx.notify:
        notify.enqueue_new_referral(db, referral, ctx.now)
    return referral


def record_consent(ctx: Context, data: ConsentInput) -> Consent:
    """Record a new consent now (a handoff under a consent given at that moment)."""
    consent = _new_consent(ctx, data, _organizations(ctx.db, set(data.recipient_org_ids))[0], {})
    _insert_loaded(ctx.db, [consent, *_recipient_rows(consent)])
    return consent


def _new_consent(ctx: Context, data: ConsentInput, orgs: dict, may_send: dict) -> Consent:
    """The consent as given, checked against the organizations it names; nothing written yet."""
    recipients = [orgs[org_id] for org_id in data.recipient_org_ids if org_id in orgs]
    if len(recipients) != len(data.recipient_org_ids) or any(
            org.id != ctx.actor.organization_id and not _may_send_to(ctx, org, may_send) for org in recipients):
        raise ValidationFailed({"consent.recipient_org_ids": "Name only organizations that take referrals."})
    return Consent(id=uuid.uuid4(), method=data.method, obtained_by_id=ctx.actor.id, obtained_at=data.obtained_at,
                   purpose=CONSENT_PURPOSE, data_categories=" ".join(sorted(data.data_categories)),
                   expires_at=data.expires_at, revoked_at=None, revoked_by_id=None, created_at=ctx.now,
                   recipients=recipients)


# The creation path's statements are built once: composing a statement and its cache key anew
# cost about a quarter of running it (SQLAlchemy memoizes the key on the statement object).
_ORGANIZATIONS = select(Organization).where(Organization.id.in_(bindparam("ids", expanding=True)))
_ORGANIZATIONS_WITH_ZONE = select(Organization, Zone).outerjoin(Zone, Zone.code == bindparam("zone_code")) \
    .where(Organization.id.in_(bindparam("ids", expanding=True)))
_insert = functools.cache(insert)  # table → its INSERT, built once


def _organizations(db: Session, ids: set, zone_code: str | None = None) -> tuple[dict, Zone | None]:
    """The organizations with these ids by id and, when asked, the zone with this code (None if
    there is none): the receiver, the consent's recipients and the zone in one query, each
    organization's row carrying the same zone (an outer join, so an unknown zone drops nothing)."""
    if not ids:
        return {}, None
    if zone_code is None:
        return {org.id: org for org in db.scalars(_ORGANIZATIONS, {"ids": list(ids)})}, None
    rows = db.execute(_ORGANIZATIONS_WITH_ZONE, {"ids": list(ids), "zone_code": zone_code}).all()
    return {org.id: org for org, _ in rows}, (rows[0][1] if rows else None)


def _may_send_to(ctx: Context, org: Organization, decided: dict) -> bool:
    if org.id not in decided:
        decided[org.id] = decide(ctx.actor, Action.REFERRAL_SEND_TO, org, ctx.pdp).allowed
    return decided[org.id]


def _recipient_rows(consent: Consent) -> list[tuple]:
    return [(consent_recipients, {"consent_id": consent.id, "organization_id": org.id}) for org in consent.recipients]


def _insert_loaded(db: Session, rows: list) -> None:
    """INSERT new rows now, table by table in the order given (parents first), and put their
    objects in the session as if they had been loaded.

    The unit of work would do the same inserts, but its bookkeeping (sorting dependencies,
    tracking each object and attribute, fetching defaults back) was most of a referral's creation
    time. Every column of an object must be set (a column left out would be expired and then
    loaded by a query), and so must every relationship the caller reads; (table, dict) items are
    association rows without an object. A failed INSERT raises before anything is attached.
    """
    batches: dict = {}
    for row in rows:
        if isinstance(row, tuple):
            table, values = row
        else:
            mapper = inspect(row).mapper
            table, state = mapper.local_table, row.__dict__
            missing = [c.key for c in mapper.column_attrs if c.key not in state]
            if missing:
                raise TypeError(f"{type(row).__name__} given without {', '.join(missing)}")
            values = {prop.columns[0].key: state[prop.key] for prop in mapper.column_attrs}
        batches.setdefault(table, []).append(values)
    # One INSERT per table, the rows as parameters: one statement per shape, cached by SQLAlchemy
    # and prepared by PostgreSQL. (A single INSERT with the others in WITH clauses was measured:
    # five round trips fewer, but its client side cost more CPU than they did.)
    connection = db.connection()
    for table, values in batches.items():
        connection.execute(_insert(table), values if len(values) > 1 else values[0])
    objects = [row for row in rows if not isinstance(row, tuple)]
    for each in objects:  # all of them first: adding one cascades to the others
        make_transient_to_detached(each)
    for each in objects:
        db.add(each)


# -- working a referral ----------------------------------------------------------------------
def transition(ctx: Context, referral: Referral, verb: str, reason: str | None = None,
               outcome: str | None = None) -> Referral:
    """Move the referral along the closed loop, or raise ConflictError when its status forbids it."""
    allowed_from, to_status = TRANSITIONS[verb]
    # Only codes travel: a reason where the verb takes none is dropped, never stored, because
    # the sender sees reasons and free text must never leave the receiving team.
    reasons = REASONS_FOR.get(verb, {"consent_expired": None} if verb == "revoke" else {})
    reason = reason if reasons else None
    outcome = outcome if verb == "complete" else None
    if reasons and verb != "revoke" and not (isinstance(reason, str) and reason in reasons):
        raise ValidationFailed({"reason": "Choose a reason."})
    if verb == "revoke" and reason is not None and reason not in reasons:
        raise ValidationFailed({"reason": "Not a known reason."})
    if verb == "complete" and not (isinstance(outcome, str) and outcome in codes.COMPLETION_OUTCOMES):
        raise ValidationFailed({"outcome": "Choose an outcome."})
    if referral.status not in allowed_from:
        raise ConflictError(f"This referral is {codes.STATUSES[referral.status].lower()}; "
                            f"it cannot be {_past(verb)} now. Reload to see its current state.")
    from_status = referral.status
    referral.status = to_status
    referral.status_reason = reason
    referral.updated_at = ctx.now
    if verb == "accept":
        referral.accepted_at = ctx.now
        if referral.assigned_to_id is None and ctx.actor and ctx.actor.organization_id == referral.receiver_org_id:
            referral.assigned_to_id = ctx.actor.id
    if verb == "complete":
        referral.outcome = outcome
    if to_status in codes.CLOSED_STATUSES:
        referral.closed_at = ctx.now
    _event(ctx, referral, from_status, to_status, reason or outcome)
    _flush(ctx)
    if ctx.notify:
        notify.enqueue_status_change(ctx.db, referral, ctx.actor)
    return referral


def assign(ctx: Context, referral: Referral, user_id: uuid.UUID | None) -> Referral:
    """Assign to an active worker of the receiving team (or unassign with None)."""
    if referral.status not in ("sent",) + WORKING_STATUSES:
        raise ConflictError("A closed referral cannot be reassigned.")
    if user_id is not None:
        worker = ctx.db.get(User, user_id)
        if worker is None or worker.organization_id != referral.receiver_org_id or not worker.active:
            raise ValidationFailed({"user_id": "Choose a worker of your team."})
    referral.assigned_to_id = user_id
    referral.updated_at = ctx.now
    _flush(ctx)
    return referral


def log_contact(ctx: Context, referral: Referral, outcome: str, note: str | None) -> ContactAttempt:
    """Record an attempt to reach the person; the first success starts the work (in progress)."""
    if not (isinstance(outcome, str) and outcome in codes.CONTACT_OUTCOMES):
        raise ValidationFailed({"outcome": "Choose what happened."})
    if referral.status not in WORKING_STATUSES:
        raise ConflictError("Accept the referral before logging contact attempts.")
    attempt = ContactAttempt(id=uuid.uuid4(), referral_id=referral.id, worker_id=ctx.actor.id, at=ctx.now,
                             outcome=outcome)
    if note:
        dek = vault.data_key(ctx.db, ctx.ring, referral)
        if dek is None:
            raise ConflictError("The person's consent has ended; notes can no longer be recorded.")
        vault.seal_contact_note(dek, attempt, note)
    ctx.db.add(attempt)
    if outcome == "reached" and referral.first_contact_at is None:
        referral.first_contact_at = ctx.now
    if outcome == "reached" and referral.status == "accepted":
        transition(ctx, referral, "start")
    else:
        referral.updated_at = ctx.now
        _flush(ctx)
    return attempt


def handoff(ctx: Context, referral: Referral, receiver_org_id: uuid.UUID,
            new_consent: ConsentInput | None = None) -> Referral:
    """Forward to another organization that the consent names, or under a consent recorded now.

    The new receiver gets its own referral (and data key) with only the categories that consent
    releases; the original sender sees that a handoff happened, never to whom the details went.
    """
    if referral.status not in WORKING_STATUSES:
        raise ConflictError("Only a referral your team is working can be handed off.")
    if any(c.receiver_org_id == receiver_org_id and c.status in codes.OPEN_STATUSES for c in referral.children):
        raise ConflictError("This referral is already with that organization.")
    # A handoff changes the referral (its version), so of two racing handoffs only one is made.
    referral.updated_at = ctx.now
    _flush(ctx)
    consent = referral.consent
    if new_consent is not None:
        new_consent.recipient_org_ids = sorted({*new_consent.recipient_org_ids, receiver_org_id})
        consent = record_consent(ctx, new_consent)
    elif not consent.names(receiver_org_id):
        raise ValidationFailed({"receiver_org_id": "The person's consent does not name this organization; "
                                                   "record a new consent to hand off."})
    dek = vault.data_key(ctx.db, ctx.ring, referral)
    person = vault.open_person(dek, referral) if "contact" in consent.categories else None
    note = vault.open_note(dek, referral) if "note" in consent.categories else None
    if not consent.active_at(ctx.now) or dek is None:
        raise ConflictError("The person's consent is not in force; the referral cannot travel further.")
    data = ReferralInput(receiver_org_id=receiver_org_id, person=person, age_band=referral.age_band,
                         zone=referral.zone.code, reason=referral.reason, services=referral.services,
                         urgency=referral.urgency, note=note, consent=None)
    child = create_referral(ctx, data, parent=referral, consent=consent)
    _event(ctx, referral, referral.status, referral.status, "handed_off")
    _flush(ctx)
    return child


def revoke_consent(ctx: Context, referral: Referral) -> list[Referral]:
    """The person withdrew consent: end it, close every open referral under it, shred the details.

    Codes, dates and statuses stay, so the counts on dashboards stay right.
    """
    consent = referral.consent
    if consent.revoked_at is not None:
        raise ConflictError("This consent has already been revoked.")
    consent.revoked_at = ctx.now
    consent.revoked_by_id = ctx.actor.id
    affected = list(ctx.db.scalars(select(Referral).where(Referral.consent_id == consent.id)))
    for each in affected:
        if each.status in codes.OPEN_STATUSES:
            transition(ctx, each, "revoke")
    _flush(ctx)
    vault.shred(ctx.db, [each.id for each in affected])
    return affected


# -- helpers ---------------------------------------------------------------------------------
def _event(ctx: Context, referral: Referral, from_status: str | None, to_status: str, reason: str | None = None):
    ctx.db.add(_new_event(ctx, referral, from_status, to_status, reason))


def _new_event(ctx: Context, referral: Referral, from_status: str | None, to_status: str,
               reason: str | None = None) -> ReferralEvent:
    actor = ctx.actor  # None for system jobs (retention)
    return ReferralEvent(id=uuid.uuid4(), referral_id=referral.id, at=ctx.now, actor_id=actor.id if actor else None,
                         actor_org_id=actor.organization_id if actor else None, from_status=from_status,
                         to_status=to_status, reason_code=reason)


def _flush(ctx: Context) -> None:
    """Write now, so that a concurrent change of the same referral is caught here as a conflict."""
    try:
        ctx.db.flush()
    except StaleDataError:
        raise ConflictError("Someone else changed this referral a moment ago. Reload to see its current state.") \
            from None


def _past(verb: str) -> str:
    return {"accept": "accepted", "decline": "declined", "start": "started", "hold": "put on hold",
            "resume": "resumed", "complete": "completed", "cancel": "cancelled", "revoke": "revoked"}[verb]


__all__ = ["Context", "ServiceError", "TRANSITIONS", "assign", "create_referral", "directory", "handoff",
           "log_contact", "record_consent", "revoke_consent", "transition"]
