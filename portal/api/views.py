"""JSON API v1. Thin, like the pages: parse the body, call the service, commit, answer the projection.

Every endpoint declares its action with `@require`, exactly as the HTML views do; a referral the
caller may not see answers 404. Errors are RFC 9457 problem details (see problems.py): 422 with
`errors` per field, 409 for a stale change, 400 for a malformed request.
"""
from __future__ import annotations

import uuid

from flask import Blueprint, abort, current_app, request, url_for
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from portal.api import problems
from portal.api.openapi import MAX_LIMIT, build_document
from portal.api.problems import json_object
from portal.db import get_session
from portal.models import Referral
from portal.policy import Action, engine
from portal.policy.gate import require
from portal.policy.projection import allowed_actions_each, project_referral
from portal.referrals import codes, queries, service
from portal.referrals.inputs import Errors, clean_text, code, parse_consent, parse_referral, parse_uuid

bp = Blueprint("api", __name__, url_prefix="/api/v1")
problems.register(bp)

MAX_OFFSET = 2**31 - 1
# verb → (action, the body field the service needs and its vocabulary)
TRANSITIONS = {
    "accept": (Action.REFERRAL_ACCEPT, None, None),
    "decline": (Action.REFERRAL_DECLINE, "reason", codes.DECLINE_REASONS),
    "hold": (Action.REFERRAL_HOLD, "reason", codes.HOLD_REASONS),
    "resume": (Action.REFERRAL_RESUME, None, None),
    "complete": (Action.REFERRAL_COMPLETE, "outcome", codes.COMPLETION_OUTCOMES),
    "cancel": (Action.REFERRAL_CANCEL, "reason", codes.CANCEL_REASONS),
}


def load_referral(referral_id: uuid.UUID):
    return get_session().get(Referral, referral_id)


def _ctx() -> service.Context:
    return service.Context(get_session(), current_app.extensions["portal.keyring"], engine(), current_user)


# -- answers ---------------------------------------------------------------------------------
def _project(referral: Referral, detail: bool = True, allowed=None) -> dict | None:
    return project_referral(get_session(), current_app.extensions["portal.keyring"], current_user, referral,
                            allowed, detail=detail)


def _answer(referral: Referral, status: int = 200, located: bool = False):
    """Commit the work, then answer the referral as the caller may now see it."""
    db = get_session()
    db.commit()
    db.expire_all()  # events and attempts written by the service are read back, not cached
    view = _project(referral)
    if view is None:  # the work is done, but the caller may no longer see the referral
        return "", 204
    headers = {"Location": url_for("api.referral", referral_id=referral.id)} if located else {}
    return view, status, headers


# -- directory and sending -------------------------------------------------------------------
@bp.get("/directory")
@require(Action.REFERRAL_CREATE)
def directory():
    orgs = [o for o in service.directory(get_session()) if o.id != current_user.organization_id]
    return {"items": [{"id": str(o.id), "name": o.name, "kind": o.kind, "zones": [z.code for z in o.zones],
                       "intake": o.intake} for o in orgs]}


@bp.post("/referrals")
@require(Action.REFERRAL_CREATE)
def create_referral():
    db = get_session()
    data = json_object(required=True)
    key = _idempotency_key()
    if key is not None and (existing := db.get(Referral, key)) is not None:
        return _replay(existing)
    ctx = _ctx()
    try:
        referral = service.create_referral(ctx, parse_referral(data, ctx.now), referral_id=key)
        # Projected from the objects the service wrote, not read back: they are what the rows
        # hold. Before the commit, so that any read the projection records commits with them.
        view = _project(referral)
        db.commit()
    except IntegrityError:
        db.rollback()
        if key is None or (existing := db.get(Referral, key)) is None:
            raise
        return _replay(existing)  # a concurrent repeat inserted the same key first
    if view is None:  # sent, but the policies let the sender see nothing of it
        return "", 204
    return view, 201, {"Location": url_for("api.referral", referral_id=referral.id)}


def _idempotency_key() -> uuid.UUID | None:
    """An optional random (version 4) UUID that becomes the referral's id: a repeat sends once."""
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    try:
        key = uuid.UUID(value.strip())
    except ValueError:
        key = None
    if key is None or key.version != 4:
        abort(400, "Idempotency-Key must be a random (version 4) UUID.")
    return key


def _replay(existing: Referral):
    if existing.created_by_id != current_user.id:
        abort(400, "This Idempotency-Key was used for another request; send a new UUID.")
    return _answer(existing, 200, located=True)


# -- lists -----------------------------------------------------------------------------------
# One URL, two lists with their own actions: the route requires a signed-in user, and each box
# then passes the gate with its own action (403 when the caller's kind may not list it).
@bp.get("/referrals")
@require(Action.HOME_VIEW)
def referrals():
    box = request.args.get("box", "inbox")
    if box not in BOXES:
        abort(400, "box is inbox or sent.")
    return BOXES[box]()


@require(Action.REFERRAL_LIST_INBOX)
def _inbox():
    status = request.args.get("status") or None
    if status is not None and status not in codes.STATUSES:
        abort(400, "status is one of: " + ", ".join(codes.STATUSES) + ".")
    limit, offset = _paging()
    return _page(queries.inbox(get_session(), current_user, status, limit=limit, offset=offset), limit, offset)


@require(Action.REFERRAL_LIST_SENT)
def _sent():
    if request.args.get("status"):
        abort(400, "The sent list has no status filter.")
    limit, offset = _paging()
    return _page(queries.sent(get_session(), current_user, limit=limit, offset=offset), limit, offset)


BOXES = {"inbox": _inbox, "sent": _sent}


def _paging() -> tuple[int, int]:
    try:
        limit = int(request.args.get("limit", queries.PAGE_SIZE))
        offset = int(request.args.get("offset", 0))
    except ValueError:
        abort(400, "limit and offset are whole numbers.")
    if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
        abort(400, f"limit is 1 to {MAX_LIMIT}; offset is 0 or more.")
    return limit, offset


def _page(rows, limit: int, offset: int) -> dict:
    """Each row projected through the PDP; a row the policies would hide is dropped."""
    items = [_project(r, detail=False, allowed=allowed)
             for r, allowed in zip(rows, allowed_actions_each(current_user, rows))]
    return {"items": [item for item in items if item is not None], "limit": limit, "offset": offset}


# -- one referral ----------------------------------------------------------------------------
@bp.get("/referrals/<uuid:referral_id>")
@require(Action.REFERRAL_VIEW_STATUS, load=load_referral)
def referral(referral, referral_id):
    return _project(referral)


def _transition(verb: str, field: str | None, vocabulary: dict | None):
    def run(referral, referral_id):
        data = json_object()
        errors = Errors()
        value = code(data.get(field), field, vocabulary, errors) if field else None
        errors.raise_if_any()
        service.transition(_ctx(), referral, verb, reason=value if field == "reason" else None,
                           outcome=value if field == "outcome" else None)
        return _answer(referral)
    run.__name__ = verb
    return run


for _verb, (_action, _field, _vocabulary) in TRANSITIONS.items():
    bp.add_url_rule(f"/referrals/<uuid:referral_id>/{_verb}", _verb,
                    require(_action, load=load_referral)(_transition(_verb, _field, _vocabulary)), methods=["POST"])


@bp.post("/referrals/<uuid:referral_id>/assign")
@require(Action.REFERRAL_ASSIGN, load=load_referral)
def assign(referral, referral_id):
    data = json_object(required=True)
    errors = Errors()
    if "user_id" not in data:
        errors.add("user_id", "Give a worker's id, or null to unassign.")
    user_id = parse_uuid(data["user_id"], "user_id", errors) if data.get("user_id") is not None else None
    errors.raise_if_any()
    service.assign(_ctx(), referral, user_id)
    return _answer(referral)


@bp.post("/referrals/<uuid:referral_id>/contact-attempts")
@require(Action.REFERRAL_LOG_CONTACT, load=load_referral)
def log_contact(referral, referral_id):
    data = json_object(required=True)
    errors = Errors()
    outcome = code(data.get("outcome"), "outcome", codes.CONTACT_OUTCOMES, errors)
    note = clean_text(data.get("note"), "note", errors, codes.NOTE_MAX, multiline=True)
    errors.raise_if_any()
    service.log_contact(_ctx(), referral, outcome, note)
    return _answer(referral, 201)


@bp.post("/referrals/<uuid:referral_id>/handoff")
@require(Action.REFERRAL_HANDOFF, load=load_referral)
def handoff(referral, referral_id):
    data = json_object(required=True)
    ctx = _ctx()
    errors = Errors()
    receiver = parse_uuid(data.get("receiver_org_id"), "receiver_org_id", errors)
    consent = None
    if data.get("consent") is not None and receiver is not None:
        given = data["consent"]
        # the new consent names the new receiver; the service adds it in any case
        given = {**given, "recipient_org_ids": [str(receiver)]} if isinstance(given, dict) else given
        consent = parse_consent(given, errors, ctx.now)
    errors.raise_if_any()
    child = service.handoff(ctx, referral, receiver, consent)
    return _answer(child, 201, located=True)


@bp.post("/referrals/<uuid:referral_id>/consent/revoke")
@require(Action.REFERRAL_REVOKE_CONSENT, load=load_referral)
def revoke_consent(referral, referral_id):
    json_object()
    service.revoke_consent(_ctx(), referral)
    return _answer(referral)


# -- the description of all of the above -----------------------------------------------------
@bp.get("/openapi.json")
@require(Action.HOME_VIEW)
def openapi():
    return build_document(current_app.config["SESSION_COOKIE_NAME"])
