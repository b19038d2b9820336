"""Referral pages: send (hospital and partners), inbox and detail (receivers), closed loop (senders).

Thin: parse the form, call the service, commit, render the projection.
"""
from __future__ import annotations

import hashlib
import uuid
from datetime import date, timedelta

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from portal.audit import trail
from portal.db import get_session
from portal.errors import ConflictError, ValidationFailed
from portal.models import Referral, User, Zone
from portal.policy import Action, decide, engine
from portal.policy.gate import require
from portal.policy.projection import allowed_actions_each, project_referral
from portal.referrals import codes, queries, service
from portal.referrals.inputs import Errors, clean_text, parse_consent, parse_referral
from portal.web.htmx import is_htmx, page_or_partial

bp = Blueprint("referrals", __name__, url_prefix="/referrals")

PERSON_FIELDS = ("preferred_name", "phone", "best_time", "language", "safe_to_text", "safe_voicemail", "code_word")


def load_referral(referral_id: uuid.UUID):
    return get_session().get(Referral, referral_id)


def _ctx() -> service.Context:
    return service.Context(get_session(), current_app.extensions["portal.keyring"], engine(), current_user)


@bp.app_context_processor
def _vocabularies():
    return {"codes": codes}


# -- sending ---------------------------------------------------------------------------------
@bp.route("/new", methods=["GET", "POST"])
@require(Action.REFERRAL_CREATE)
def create():
    db = get_session()
    if request.method == "GET":
        return _form(values={"referral_id": str(uuid.uuid4())})
    form = request.form
    referral_id = _uuid_or_400(form.get("referral_id"))
    existing = db.get(Referral, referral_id)
    if existing is not None:  # the same form submitted twice: one referral
        if existing.created_by_id != current_user.id:
            abort(400)
        return redirect(url_for("referrals.detail", referral_id=existing.id), code=303)
    given = form.get("consent.given")
    if given == "no":
        return render_template("referrals/no_consent.html")
    data = {
        "receiver_org_id": form.get("receiver_org_id"),
        "person": {k: form.get(f"person.{k}") for k in PERSON_FIELDS},
        "age_band": form.get("age_band"), "zone": form.get("zone"), "reason": form.get("reason"),
        "services": form.getlist("services"), "urgency": form.get("urgency"), "note": form.get("note"),
        "consent": {"method": form.get("consent.method"),
                    "recipient_org_ids": form.getlist("consent.recipient_org_ids"),
                    "data_categories": form.getlist("consent.data_categories"),
                    "expires_on": form.get("consent.expires_on")} if given == "yes" else None,
    }
    try:
        if given != "yes":
            raise ValidationFailed({"consent.given": "Record whether the person agreed to the referral."})
        ctx = _ctx()
        referral = service.create_referral(ctx, parse_referral(data, ctx.now), referral_id=referral_id)
        db.commit()
    except ValidationFailed as failed:
        db.rollback()
        return _form(values=form, errors=failed.errors), 422
    except IntegrityError:
        db.rollback()
        if db.get(Referral, referral_id) is None:
            raise
        # a concurrent double submit inserted the same id first: show that one
        return redirect(url_for("referrals.detail", referral_id=referral_id), code=303)
    return redirect(url_for("referrals.detail", referral_id=referral.id), code=303)


@bp.get("/new/receivers")
@require(Action.REFERRAL_CREATE)
def receivers():
    """The organizations that take referrals, those serving the chosen zone first (htmx partial)."""
    return render_template("partials/receiver_options.html", **_receiver_choices(request.args.get("zone")),
                           selected=request.args.get("receiver_org_id"))


def _receiver_choices(zone_code: str | None) -> dict:
    orgs = [o for o in service.directory(get_session()) if o.id != current_user.organization_id]
    serving = [o for o in orgs if zone_code and any(z.code == zone_code for z in o.zones)]
    others = [o for o in orgs if o not in serving]
    return {"serving": serving, "others": others, "zone": zone_code}


def _form(values, errors=None):
    db = get_session()
    zones = db.query(Zone).order_by(Zone.code).all()
    default_expiry = (date.today() + timedelta(days=90)).isoformat()
    return render_template("referrals/new.html", values=values, errors=errors or {}, zones=zones,
                           default_expiry=default_expiry, **_receiver_choices(values.get("zone")))


# -- lists -----------------------------------------------------------------------------------
@bp.get("/inbox")
@require(Action.REFERRAL_LIST_INBOX)
def inbox():
    status = request.args.get("status") or None
    if status and status not in codes.STATUSES:
        abort(400)
    db = get_session()
    referrals, waiting = queries.inbox(db, current_user, status), queries.new_in_inbox(db, current_user)
    seen = _fingerprint(referrals, waiting)
    if is_htmx() and request.args.get("seen") == seen:
        trail.discard()  # nothing changed: nothing is decrypted, shown or logged
        return "", 204
    org = current_user.organization
    return page_or_partial("referrals/inbox.html", "partials/inbox_rows.html", rows=_rows(referrals),
                           status=status, waiting=waiting, org=org, swap=is_htmx(), seen=seen,
                           can_set_intake=decide(current_user, Action.ORG_SET_INTAKE, org).allowed)


def _fingerprint(referrals, waiting: int) -> str:
    """Changes whenever a row the inbox shows (or the count) changes; the 15 s poll sends it back."""
    digest = hashlib.sha256(str(waiting).encode())
    for referral in referrals:
        digest.update(f"|{referral.id}:{referral.version}".encode())
    return digest.hexdigest()[:32]


@bp.get("/sent")
@require(Action.REFERRAL_LIST_SENT)
def sent():
    return render_template("referrals/sent.html", rows=_rows(queries.sent(get_session(), current_user)))


def _rows(referrals) -> list[dict]:
    """Project each row through the PDP; a row the policies would hide is dropped, not shown."""
    db, ring = get_session(), current_app.extensions["portal.keyring"]
    rows = []
    for referral, allowed in zip(referrals, allowed_actions_each(current_user, referrals)):
        view = project_referral(db, ring, current_user, referral, allowed, detail=False)
        if view is not None:
            rows.append(view)
    return rows


# -- one referral ----------------------------------------------------------------------------
@bp.get("/<uuid:referral_id>")
@require(Action.REFERRAL_VIEW_STATUS, load=load_referral)
def detail(referral, referral_id):
    return _detail_page(referral)


def _detail_page(referral, error=None, status=200):
    view = project_referral(get_session(), current_app.extensions["portal.keyring"], current_user, referral)
    if view is None:  # after a failed step the caller may no longer see it
        abort(404)
    team = []
    if Action.REFERRAL_ASSIGN.value in view["allowed"]:
        team = get_session().query(User).filter_by(organization_id=referral.receiver_org_id, active=True) \
            .order_by(User.display_name).all()
    partners = [o for o in service.directory(get_session())
                if o.id != referral.receiver_org_id] if Action.REFERRAL_HANDOFF.value in view["allowed"] else []
    return render_template("referrals/detail.html", r=view, team=team, partners=partners, error=error,
                           consent_names={str(o.id) for o in referral.consent.recipients}), status


def _act(referral, work):
    """Run one workflow step; a conflict re-renders the page with 409 and the reason."""
    db = get_session()
    try:
        work(_ctx())
        db.commit()
    except (ConflictError, ValidationFailed) as failed:
        db.rollback()
        db.expire_all()
        status = 409 if isinstance(failed, ConflictError) else 422
        message = failed.message if isinstance(failed, ConflictError) else " ".join(failed.errors.values())
        return _detail_page(db.get(Referral, referral.id), error=message, status=status)
    return redirect(url_for("referrals.detail", referral_id=referral.id), code=303)


def _transition(verb):
    def run(referral, referral_id):
        return _act(referral, lambda ctx: service.transition(ctx, referral, verb, reason=request.form.get("reason"),
                                                             outcome=request.form.get("outcome")))
    run.__name__ = verb
    return run


for _verb, _action in (("accept", Action.REFERRAL_ACCEPT), ("decline", Action.REFERRAL_DECLINE),
                       ("hold", Action.REFERRAL_HOLD), ("resume", Action.REFERRAL_RESUME),
                       ("complete", Action.REFERRAL_COMPLETE), ("cancel", Action.REFERRAL_CANCEL)):
    bp.add_url_rule(f"/<uuid:referral_id>/{_verb}", _verb, require(_action, load=load_referral)(_transition(_verb)),
                    methods=["POST"])


@bp.post("/<uuid:referral_id>/assign")
@require(Action.REFERRAL_ASSIGN, load=load_referral)
def assign(referral, referral_id):
    user_id = request.form.get("user_id") or None
    return _act(referral, lambda ctx: service.assign(ctx, referral, _uuid_or_400(user_id) if user_id else None))


@bp.post("/<uuid:referral_id>/contact-attempts")
@require(Action.REFERRAL_LOG_CONTACT, load=load_referral)
def log_contact(referral, referral_id):
    def work(ctx):
        errors = Errors()
        note = clean_text(request.form.get("note"), "note", errors, codes.NOTE_MAX, multiline=True)
        errors.raise_if_any()
        service.log_contact(ctx, referral, request.form.get("outcome"), note)
    return _act(referral, work)


@bp.post("/<uuid:referral_id>/handoff")
@require(Action.REFERRAL_HANDOFF, load=load_referral)
def handoff(referral, referral_id):
    form = request.form

    def work(ctx):
        errors = Errors()
        receiver = _uuid_or_400(form.get("receiver_org_id"))
        consent = None
        if form.get("consent.method"):
            consent = parse_consent({"method": form.get("consent.method"), "recipient_org_ids": [str(receiver)],
                                     "data_categories": form.getlist("consent.data_categories"),
                                     "expires_on": form.get("consent.expires_on")}, errors, ctx.now)
        errors.raise_if_any()
        service.handoff(ctx, referral, receiver, consent)
    return _act(referral, work)


@bp.post("/<uuid:referral_id>/consent/revoke")
@require(Action.REFERRAL_REVOKE_CONSENT, load=load_referral)
def revoke_consent(referral, referral_id):
    return _act(referral, lambda ctx: service.revoke_consent(ctx, referral))


def _uuid_or_400(value) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        abort(400)
