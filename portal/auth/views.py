"""GET/POST /login, the second-factor steps /login/code and /login/enroll, and POST /logout.

Thin: the rules live in service.py, mfa.py, sessions.py and flow.py (what happens between the
two factors). The account's own second-factor pages and the step-up are in mfa_views.py.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user

from portal.audit import trail
from portal.audit.events import Event
from portal.auth import flow, lockout, mfa, pages, service, sessions
from portal.auth.forms import CodeForm, LoginForm
from portal.db import get_session
from portal.extensions import login_manager
from portal.policy.gate import public

bp = Blueprint("auth", __name__)
log = logging.getLogger("portal.auth")

GENERIC_FAILURE = "That e-mail and password do not match an active account."
WRONG_CODE = "That code did not work. Check your authenticator app and try the newest code, or a recovery code."
WRONG_ENROLL_CODE = "That code did not match. Type the code your app shows now for Peace Portal."


@login_manager.user_loader
def _load_user(token: str):
    config = current_app.config["PORTAL"]
    return sessions.load_session_user(
        get_session(), token,
        idle=timedelta(minutes=config.session_idle_minutes),
        lifetime=timedelta(hours=config.session_max_hours),
    )


@login_manager.unauthorized_handler
def _unauthorized():
    """Visitors go to the login page; htmx is told to navigate there, JSON clients get a 401."""
    from portal.web.errors import render_error, wants_json
    from portal.web.htmx import is_htmx
    if wants_json():
        response = render_error(401)
        response.headers["WWW-Authenticate"] = 'Cookie realm="peace-portal", form="/login"'
        return response
    login_url = url_for("auth.login", next=request.path if request.method == "GET" else None)
    if is_htmx():
        return "", 401, {"HX-Redirect": login_url}
    return redirect(login_url)


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    form = LoginForm()
    if form.validate_on_submit():
        db = get_session()
        user = service.authenticate(db, form.email.data, form.password.data)
        if user is None:
            trail.record(Event.LOGIN_FAILED, allowed=False)  # no e-mail: it may name nobody, or a person
            db.commit()  # keep the failed-login count
            log.info("login failed")
            form.password.errors.append(GENERIC_FAILURE)
            return render_template("auth/login.html", form=form), 401
        db.commit()
        return flow.first_factor_passed(user, flow.safe_next(request.args.get("next")))
    status = 400 if form.errors else 200
    return render_template("auth/login.html", form=form), status


def _keyring():
    return current_app.extensions["portal.keyring"]


@bp.route("/login/code", methods=["GET", "POST"])
@public
def login_code():
    """The second step: a TOTP code or a recovery code, for the login the password step left pending."""
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    pending = flow.pending_login()
    if isinstance(pending, str):
        return flow.restart_login(pending)
    db, user = get_session(), pending.user
    if not mfa.is_enrolled(db, user):  # removed since the password step
        return redirect(url_for("auth.login_enroll")) if flow.mfa_required(user) else flow.restart_login(flow.MISSING)
    form = CodeForm()
    if form.validate_on_submit():
        # Wrong codes count toward the account's lockout like wrong passwords: someone holding the
        # password cannot guess codes from many addresses. A locked account's code is not checked.
        locked = lockout.is_locked(db, user.email)
        outcome = mfa.Outcome.WRONG if locked else mfa.verify(db, _keyring(), user, form.code.data)
        if outcome.ok:
            lockout.clear(db, user.email)
            db.commit()
            response = flow.open_signed_in_session(user, pending.next_url, second_factor=True)
            if outcome is mfa.Outcome.RECOVERY:  # after the session is opened, so the message survives it
                flash(f"You signed in with a recovery code; {mfa.recovery_codes_left(db, user)} left. "
                      "Make new ones on your account page.")
            return response
        if not locked:
            service.record_failure(db, user.email, user)
        log.info("login code refused user=%s outcome=%s locked=%s", user.id, outcome.value, locked)
        trail.record(Event.SECOND_FACTOR_FAILED, user, allowed=False, actor=user,
                     detail={"outcome": outcome.value, "locked": locked})
        db.commit()  # keep the count (a 4xx response rolls back what is not committed)
        form.code.errors.append(WRONG_CODE)
        return render_template("auth/login_code.html", form=form), 401
    return render_template("auth/login_code.html", form=form), 400 if form.errors else 200


@bp.route("/login/enroll", methods=["GET", "POST"])
@public
def login_enroll():
    """An account that must have a second factor and has none sets one up before it gets a session."""
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    pending = flow.pending_login()
    if isinstance(pending, str):
        return flow.restart_login(pending)
    db, user, ring = get_session(), pending.user, _keyring()
    if mfa.is_enrolled(db, user):  # a password alone never replaces a confirmed factor
        return redirect(url_for("auth.login_code"))
    form = CodeForm()
    if form.validate_on_submit():
        codes = mfa.confirm_enrollment(db, ring, user, form.code.data)
        if codes is not None:
            trail.record(Event.SECOND_FACTOR_ENROLLED, user, actor=user)
            db.commit()
            log.info("second factor enrolled user=%s", user.id)
            flow.start_signed_in_session(user, second_factor=True)
            return pages.render_recovery_codes(codes, pending.next_url or url_for("home.index"), first_time=True)
        form.code.errors.append(WRONG_ENROLL_CODE)
    secret = mfa.secret_of(db, ring, user)  # made when the password was accepted (flow.py)
    if secret is None:
        secret = mfa.start_enrollment(db, ring, user)
        db.commit()
    return pages.render_enroll(user, secret, form, url_for("auth.login_enroll"), 400 if form.errors else 200,
                               cancel_url=url_for("auth.login"))


@bp.post("/logout")
@public
def logout():
    if current_user.is_authenticated:
        db = get_session()
        sessions.close_session(db, current_user.session_token)
        trail.record(Event.LOGOUT, current_user)
        db.commit()
        log.info("logout user=%s", current_user.id)
    logout_user()
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))


from portal.auth import mfa_views  # noqa: E402,F401  (registers the account's second-factor pages on bp)
