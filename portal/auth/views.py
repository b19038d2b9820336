"""GET/POST /login and POST /logout. Thin: the rules live in service.py and sessions.py."""
from __future__ import annotations

import logging
from datetime import timedelta

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user

from portal.auth import flow, service, sessions
from portal.auth.forms import LoginForm
from portal.db import get_session
from portal.extensions import login_manager
from portal.policy.gate import public

bp = Blueprint("auth", __name__)
log = logging.getLogger("portal.auth")

GENERIC_FAILURE = "That e-mail and password do not match an active account."


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
            db.commit()  # keep the failed-login count
            log.info("login failed")
            form.password.errors.append(GENERIC_FAILURE)
            return render_template("auth/login.html", form=form), 401
        db.commit()
        return flow.first_factor_passed(user, _safe_next(request.args.get("next")))
    status = 400 if form.errors else 200
    return render_template("auth/login.html", form=form), status


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: never another host, scheme or protocol-relative URL."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


@bp.post("/logout")
@public
def logout():
    if current_user.is_authenticated:
        db = get_session()
        sessions.close_session(db, current_user.session_token)
        db.commit()
        log.info("logout user=%s", current_user.id)
    logout_user()
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))
