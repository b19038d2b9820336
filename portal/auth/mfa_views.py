"""A signed-in account's second factor: set it up, new recovery codes, remove it; and the step-up
that exports ask for. Thin: the rules live in mfa.py, the freshness in step_up.py."""
from __future__ import annotations

import logging

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.audit import trail
from portal.audit.events import Event
from portal.auth import flow, mfa, pages, sessions
from portal.auth.forms import CodeForm
from portal.auth.views import WRONG_CODE, WRONG_ENROLL_CODE, bp
from portal.db import get_session
from portal.policy import Action
from portal.policy.gate import require

log = logging.getLogger("portal.auth")


def _self():
    return current_user


def _keyring():
    return current_app.extensions["portal.keyring"]


def _settings(user, status: int = 200, form: CodeForm | None = None, failed: str | None = None):
    db = get_session()
    return render_template("auth/mfa_settings.html", user=user, form=form or CodeForm(), failed=failed,
                           enrolled=mfa.is_enrolled(db, user), required=flow.mfa_required(user),
                           codes_left=mfa.recovery_codes_left(db, user)), status


@bp.get("/account/mfa")
@require(Action.ACCOUNT_MANAGE_MFA, load=_self)
def mfa_settings(user):
    return _settings(user)


@bp.route("/account/mfa/enroll", methods=["GET", "POST"])
@require(Action.ACCOUNT_MANAGE_MFA, load=_self)
def mfa_enroll(user):
    """Set up an authenticator app: QR code and secret, then a first code confirms it."""
    db, ring = get_session(), _keyring()
    next_url = flow.safe_next(request.args.get("next"))
    if mfa.is_enrolled(db, user):
        return redirect(url_for("auth.mfa_settings"))
    form = CodeForm()
    if form.validate_on_submit():
        codes = mfa.confirm_enrollment(db, ring, user, form.code.data)
        if codes is not None:
            sessions.mark_second_factor(db, user.session_token)  # the code was just proved
            trail.record(Event.SECOND_FACTOR_ENROLLED, user)
            db.commit()
            log.info("second factor enrolled user=%s", user.id)
            return pages.render_recovery_codes(codes, next_url or url_for("auth.mfa_settings"), first_time=True)
        form.code.errors.append(WRONG_ENROLL_CODE)
    secret = mfa.secret_of(db, ring, user)  # the same one until confirmed, so a reload keeps the QR code
    if secret is None:
        secret = mfa.start_enrollment(db, ring, user)
        db.commit()
    return pages.render_enroll(user, secret, form, url_for("auth.mfa_enroll", next=next_url),
                               400 if form.errors else 200, cancel_url=url_for("auth.mfa_settings"))


def _proved(user, form: CodeForm) -> bool:
    """A valid code (TOTP or recovery) for a change to the second factor itself; recorded as a step-up."""
    db = get_session()
    if not form.validate_on_submit():
        return False
    outcome = mfa.verify(db, _keyring(), user, form.code.data)
    if not outcome.ok:
        log.info("second factor code refused user=%s outcome=%s endpoint=%s", user.id, outcome.value,
                 request.endpoint)
        trail.record(Event.SECOND_FACTOR_FAILED, user, allowed=False,
                     detail={"outcome": outcome.value, "via": request.endpoint})
        form.code.errors.append(WRONG_CODE)
        return False
    sessions.mark_second_factor(db, user.session_token)
    return True


@bp.post("/account/mfa/recovery-codes")
@require(Action.ACCOUNT_MANAGE_MFA, load=_self)
def mfa_recovery_codes(user):
    """Ten new recovery codes (the old ones stop working), after a current code."""
    db = get_session()
    if not mfa.is_enrolled(db, user):
        return redirect(url_for("auth.mfa_settings"), code=303)
    form = CodeForm()
    if not _proved(user, form):
        return _settings(user, 400, form, failed="codes")
    codes = mfa.new_recovery_codes(db, user)
    db.commit()
    log.info("recovery codes replaced user=%s", user.id)
    return pages.render_recovery_codes(codes, url_for("auth.mfa_settings"), first_time=False)


@bp.post("/account/mfa/remove")
@require(Action.ACCOUNT_MANAGE_MFA, load=_self)
def mfa_remove(user):
    """Remove the authenticator (after a current code). An account that must have one sets up a new one."""
    db = get_session()
    if not mfa.is_enrolled(db, user):
        return redirect(url_for("auth.mfa_settings"), code=303)
    form = CodeForm()
    if not _proved(user, form):
        return _settings(user, 400, form, failed="remove")
    mfa.remove(db, user)
    db.commit()
    log.info("second factor removed user=%s", user.id)
    if flow.mfa_required(user):
        flash("Your old authenticator no longer works. Set up the new one now: your account needs it to sign in.")
        return redirect(url_for("auth.mfa_enroll"), code=303)
    flash("Two-step sign-in is off.")
    return redirect(url_for("auth.mfa_settings"), code=303)


@bp.route("/step-up", methods=["GET", "POST"])
@require(Action.ACCOUNT_STEP_UP, load=_self)
def step_up(user):
    """Confirm a code again before an export; then back to where the user was going."""
    db = get_session()
    next_url = flow.safe_next(request.args.get("next"))
    if not mfa.is_enrolled(db, user):
        flash("Exports need two-step sign-in. Set up an authenticator app first.")
        return redirect(url_for("auth.mfa_enroll", next=next_url))
    form = CodeForm()
    if request.method == "POST":
        if _proved(user, form):
            db.commit()
            return redirect(next_url or url_for("home.index"), code=303)
        return render_template("auth/step_up.html", form=form, next_url=next_url), 401 if form.code.data else 400
    return render_template("auth/step_up.html", form=form, next_url=next_url)
