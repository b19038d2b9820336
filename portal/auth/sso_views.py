"""Single sign-on pages: find your organization by work e-mail, go to its provider, come back.

GET/POST /sso            the work e-mail form; lists the organizations whose provider takes its domain
GET /sso/<org id>        start: a pending sign-in for this browser, then off to the provider
GET /sso/callback        finish: validate everything, then the shared sign-in flow (auth/flow.py)

These are sign-in pages, so `@public`. Thin: the rules are in sso.py, the protocol in oidc.py.
Every failure shows the same page; the log gets the reason's code and ids, never who it was.
"""
from __future__ import annotations

import logging
import secrets
import uuid

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import EmailField
from wtforms.validators import DataRequired, Length

from portal.audit import trail
from portal.audit.events import Event
from portal.auth import flow, oidc, sso
from portal.db import get_session, utcnow
from portal.policy.gate import public

bp = Blueprint("sso", __name__)
log = logging.getLogger("portal.auth")

BROWSER_KEY = "sso_browser"  # random, in the signed session cookie: ties a sign-in to the browser that began it


class WorkEmailForm(FlaskForm):
    email = EmailField("Work e-mail", validators=[DataRequired(), Length(max=254)])


@bp.record_once
def _directory(state) -> None:
    config = state.app.config["PORTAL"]
    # Plain http only on loopback and never in production (tests and local providers).
    state.app.extensions["portal.oidc"] = oidc.Directory(allow_http_loopback=not config.production)


def _next_url() -> str | None:
    """Where to land after signing in: a path on this site (flow.safe_next), short enough to keep."""
    target = flow.safe_next(request.args.get("next"))
    return target if target and len(target) <= 512 else None


def _redirect_uri() -> str:
    return current_app.config["PORTAL"].base_url + "/sso/callback"


def _failed(failure: sso.SsoFailure):
    log.info("sso failed code=%s%s provider=%s", failure.code, f" claim={failure.claim}" if failure.claim else "",
             failure.provider_id)
    trail.record(Event.SSO_LOGIN_FAILED, allowed=False,
                 detail={"code": failure.code, "provider": str(failure.provider_id) if failure.provider_id else None})
    return render_template("auth/sso_failed.html"), failure.status


@bp.route("/sso", methods=["GET", "POST"])
@public
def choose():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    form = WorkEmailForm()
    next_url = _next_url()
    if form.validate_on_submit():
        domain = form.email.data.strip().lower().rpartition("@")[2]
        organizations = sso.organizations_for_domain(get_session(), domain)
        if organizations:
            # Links, not a redirect: the form's CSP (form-action 'self') would stop a hop to the provider.
            return render_template("auth/sso.html", form=form, organizations=organizations, next_url=next_url)
        form.email.errors.append("Single sign-on is not set up for that address. Sign in with your password.")
    status = 400 if form.errors else 200
    return render_template("auth/sso.html", form=form, organizations=None, next_url=next_url), status


@bp.get("/sso/<uuid:org_id>")
@public
def start(org_id: uuid.UUID):
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    db = get_session()
    provider = sso.provider_for(db, org_id)
    if provider is None:
        return _failed(sso.SsoFailure("not_configured", 404))
    browser = session.setdefault(BROWSER_KEY, secrets.token_urlsafe(32))
    try:
        started = sso.begin(db, current_app.extensions["portal.keyring"], current_app.extensions["portal.oidc"],
                            provider, browser, _redirect_uri(), _next_url(), utcnow())
    except sso.SsoFailure as failure:
        return _failed(failure)
    db.commit()
    log.info("sso started provider=%s", provider.id)
    return redirect(started.url)


@bp.get("/sso/callback")
@public
def callback():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    db = get_session()
    try:
        user, next_url = sso.finish(db, current_app.extensions["portal.keyring"], current_app.extensions["portal.oidc"],
                                    request.args.to_dict(), session.get(BROWSER_KEY), _redirect_uri(), utcnow())
    except sso.SsoFailure as failure:
        db.commit()  # the state is spent even when the sign-in fails
        return _failed(failure)
    db.commit()
    log.info("sso signed in user=%s", user.id)
    return flow.first_factor_passed(user, next_url)
