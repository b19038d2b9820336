"""Accountability pages: a referral's access history and disclosure report, the city's audit search."""
from __future__ import annotations

import uuid
from datetime import date

from flask import Blueprint, render_template, request, url_for
from sqlalchemy import select

from portal.audit import queries
from portal.audit.events import Event
from portal.db import get_session, utcnow
from portal.models import Organization, Referral, User
from portal.policy import Action
from portal.policy.gate import require

bp = Blueprint("audit", __name__)
AUDITED_ACTIONS = sorted([a.value for a in Action] + [e.value for e in Event])


def load_referral(referral_id: uuid.UUID):
    return get_session().get(Referral, referral_id)


@bp.get("/referrals/<uuid:referral_id>/access-history")
@require(Action.REFERRAL_VIEW_ACCESS_HISTORY, load=load_referral)
def access_history(referral, referral_id):
    return render_template("audit/access_history.html", referral=referral,
                           events=queries.access_history(get_session(), referral))


@bp.get("/referrals/<uuid:referral_id>/disclosures")
@require(Action.REFERRAL_DISCLOSURE_REPORT, load=load_referral)
def disclosures(referral, referral_id):
    return render_template("audit/disclosures.html", referral=referral, today=utcnow().date().isoformat(),
                           links=queries.disclosures(get_session(), referral))


@bp.get("/audit")
@require(Action.AUDIT_SEARCH)
def search():
    db = get_session()
    filters, errors = _parse(request.args)
    before = request.args.get("before", "")
    rows, next_before = ([], None) if errors else queries.search(
        db, filters, int(before) if before.isdigit() else None)
    choices = {
        "organizations": db.execute(select(Organization.id, Organization.name).order_by(Organization.name)).all(),
        "actors": db.execute(select(User.id, User.display_name, Organization.name).join(User.organization)
                             .order_by(Organization.name, User.display_name)).all(),
        "actions": AUDITED_ACTIONS,
    }
    next_url = url_for("audit.search", **{**request.args.to_dict(), "before": next_before}) if next_before else None
    return render_template("audit/search.html", rows=rows, next_url=next_url, errors=errors,
                           values=request.args, **choices), 400 if errors else 200


def _parse(args) -> tuple[queries.AuditFilters, dict[str, str]]:
    """Validated filters; anything unparseable is named, nothing is guessed."""
    errors, values = {}, {}
    for name in ("actor", "organization"):
        if args.get(name):
            try:
                values[f"{name}_id"] = uuid.UUID(args[name])
            except ValueError:
                errors[name] = f"Choose the {name} from the list."
    if args.get("action"):
        if args["action"] in AUDITED_ACTIONS:
            values["action"] = args["action"]
        else:
            errors["action"] = "Choose the action from the list."
    for name, key in (("from", "start"), ("to", "end")):
        if args.get(name):
            try:
                values[key] = date.fromisoformat(args[name])
            except ValueError:
                errors[name] = "Use a date such as 2026-03-31."
    if values.get("start") and values.get("end") and values["start"] > values["end"]:
        errors["to"] = "The end date is before the start date."
    return queries.AuditFilters(**values), errors
