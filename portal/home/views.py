from __future__ import annotations

import logging

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, session, url_for
from flask_login import current_user, logout_user
from sqlalchemy import text

from portal.auth.sessions import close_all_sessions
from portal.db import get_session
from portal.home.transparency import transparency_table
from portal.policy import Action, decide_many, engine
from portal.policy.gate import public, require

bp = Blueprint("home", __name__)
log = logging.getLogger("portal.health")

# What each kind of organization is for; the page a user lands on after login.
HOME_TEMPLATES = {
    "hospital_program": "home/hospital_program.html",
    "cvi_team": "home/cvi_team.html",
    "service_provider": "home/service_provider.html",
    "city_office": "home/city_office.html",
    "police_partner": "home/police_partner.html",
}


# The navigation a user sees is itself a set of policy decisions, made once per page.
NAV_ACTIONS = (Action.REFERRAL_CREATE, Action.REFERRAL_LIST_INBOX, Action.REFERRAL_LIST_SENT, Action.ORG_LIST,
               Action.DASHBOARD_VIEW, Action.AUDIT_SEARCH)


@bp.app_context_processor
def _navigation():
    if not current_user.is_authenticated:
        return {"nav": frozenset()}
    decisions = decide_many(current_user, NAV_ACTIONS)
    return {"nav": frozenset(a.value for a, d in zip(NAV_ACTIONS, decisions) if d.allowed)}


@bp.get("/")
@require(Action.HOME_VIEW)
def index():
    return render_template(HOME_TEMPLATES[current_user.organization.kind], org=current_user.organization)


@bp.get("/account")
@require(Action.ACCOUNT_VIEW_SELF, load=lambda: current_user)
def account(user):
    return render_template("home/account.html", user=user)


@bp.post("/account/sign-out-everywhere")
@require(Action.ACCOUNT_SIGN_OUT_EVERYWHERE, load=lambda: current_user)
def sign_out_everywhere(user):
    """End every session of this account, on every device, this one included."""
    db = get_session()
    close_all_sessions(db, user)
    db.commit()
    logout_user()
    session.clear()
    flash("You are signed out on every device.")
    return redirect(url_for("auth.login"), code=303)


@bp.get("/transparency")
@public
def transparency():
    return render_template("home/transparency.html", table=transparency_table(engine()),
                           catalog=current_app.extensions["portal.catalog"])


@bp.get("/healthz")
@public
def healthz():
    try:
        get_session().execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any database failure means unhealthy; details stay in the log
        log.exception("health check failed")
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok")
