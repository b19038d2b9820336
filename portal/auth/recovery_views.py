"""Forgotten passwords and invitation links. Reached signed out, so every page here is @public.

/password/forgot answers the same page, no sooner than ANSWER_SECONDS, whether or not an account
has the address. /invitation?token=... and /password/reset?token=... check the link, move the
token from the URL into the signed session cookie and redirect to /password/new, so the token
leaves the address bar and the history. Thin: the rules live in tokens.py.
"""
from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for

from portal.audit import trail
from portal.audit.events import Event
from portal.auth import tokens
from portal.auth.account_mail import LINK_PATHS
from portal.auth.recovery_forms import ForgotForm, NewPasswordForm
from portal.auth.tokens import TokenError
from portal.db import get_session
from portal.errors import ServiceError
from portal.policy.gate import public

bp = Blueprint("recovery", __name__)
log = logging.getLogger("portal.auth")

LINK = "account_link"  # session key: {"purpose": ..., "token": ...} between the link and the form
# Long enough to cover the extra work of queueing a mail, so the timing does not tell either.
ANSWER_SECONDS = 0.4
DONE = {tokens.INVITE: "Welcome! Your password is set and your account is active. Sign in with your e-mail and "
                       "new password.",
        tokens.RESET: "Your new password is set, and every session of your account has ended. Sign in with it."}


@bp.route("/password/forgot", methods=["GET", "POST"])
@public
def forgot():
    form = ForgotForm()
    if form.validate_on_submit():
        started = time.monotonic()
        db = get_session()
        tokens.request_reset(db, current_app.extensions["portal.keyring"], form.email.data)
        db.commit()
        log.info("password reset asked for")  # never the address, never whether an account has it
        time.sleep(max(0.0, ANSWER_SECONDS - (time.monotonic() - started)))
        return redirect(url_for("recovery.forgot_sent"), code=303)
    return render_template("auth/forgot.html", form=form), 400 if form.errors else 200


@bp.get("/password/forgot/sent")
@public
def forgot_sent():
    return render_template("auth/forgot_sent.html")


@bp.get(LINK_PATHS[tokens.INVITE])
@public
def invitation():
    return _open_link(tokens.INVITE)


@bp.get(LINK_PATHS[tokens.RESET])
@public
def reset():
    return _open_link(tokens.RESET)


def _open_link(purpose: str):
    raw = request.args.get("token")
    try:
        tokens.find(get_session(), raw, purpose)
    except TokenError as error:
        return _unusable(error, purpose)
    session[LINK] = {"purpose": purpose, "token": raw}
    return redirect(url_for("recovery.new_password"), code=303)


@bp.route("/password/new", methods=["GET", "POST"])
@public
def new_password():
    link = session.get(LINK) if isinstance(session.get(LINK), dict) else {}
    purpose, raw = link.get("purpose"), link.get("token")
    if purpose not in LINK_PATHS:
        return _unusable(TokenError(tokens.INVALID), None)
    db = get_session()
    try:
        token = tokens.find(db, raw, purpose)
    except TokenError as error:
        session.pop(LINK, None)
        return _unusable(error, purpose)
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            user = tokens.redeem(db, raw, purpose, form.password.data)
        except TokenError as error:  # used by another request a moment ago
            db.rollback()
            session.pop(LINK, None)
            return _unusable(error, purpose)
        except ServiceError as error:
            db.rollback()
            form.password.errors.append(error.message)
        else:
            trail.record(Event.INVITATION_ACCEPTED if purpose == tokens.INVITE else Event.PASSWORD_RESET, user,
                         actor=user)
            db.commit()
            session.pop(LINK, None)
            log.info("password set through a %s link user=%s", purpose, user.id)
            flash(DONE[purpose])
            return redirect(url_for("auth.login"), code=303)
    return render_template("auth/new_password.html", form=form, purpose=purpose,
                           email=token.user.email), 400 if form.errors else 200


def _unusable(error: TokenError, purpose: str | None):
    trail.record(Event.ACCOUNT_LINK_REFUSED, allowed=False, detail={"reason": error.reason, "purpose": purpose})
    status = 404 if error.reason == tokens.INVALID else 410
    return render_template("auth/link_unusable.html", message=error.message, purpose=purpose), status
