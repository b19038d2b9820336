"""The one way into a signed-in session, whatever proved the first factor.

The password form and single sign-on both call `first_factor_passed(user, next_url)` once they
have established who the person is. From there the flow is shared: a second factor when the
account has one or must have one, then a fresh server-side session (rotated, so nothing from
before the login survives it).

Between the two factors the signed Flask session holds only a pending marker -- the user's id,
the time and where to go next -- valid for PENDING_SECONDS. It is never a signed-in session: the
server-side session row is opened only after the second factor.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, request, session, url_for
from flask_login import login_user

from portal.audit import trail
from portal.audit.events import Event
from portal.auth import mfa, sessions
from portal.db import get_session
from portal.models import User

log = logging.getLogger("portal.auth")

PENDING = "pending_login"
PENDING_SECONDS = 300  # from the password to the code
MISSING, EXPIRED = "missing", "expired"
RESTART_MESSAGES = {
    MISSING: "Enter your e-mail and password first.",
    EXPIRED: "That sign-in took too long. Enter your e-mail and password again.",
}


@dataclass(frozen=True)
class PendingLogin:
    user: User
    next_url: str | None


def mfa_required(user: User) -> bool:
    return mfa.required(user, current_app.config["PORTAL"].mfa_required_kinds)


def first_factor_passed(user: User, next_url: str | None):
    """Respond to a successful first factor: continue to the second, or sign in."""
    db = get_session()
    session.clear()  # whatever came before, including another pending login, ends here
    enrolled = mfa.is_enrolled(db, user)
    if not enrolled and mfa_required(user):
        # A new secret for each password success: one shown to an earlier holder of the password
        # (who did not confirm it) is never the one this login confirms.
        mfa.start_enrollment(db, current_app.extensions["portal.keyring"], user)
        db.commit()
    if enrolled or mfa_required(user):
        session[PENDING] = {"user": str(user.id), "at": int(time.time()), "next": safe_next(next_url)}
        log.info("first factor passed user=%s enrolled=%s", user.id, enrolled)
        return redirect(url_for("auth.login_code" if enrolled else "auth.login_enroll"))
    return open_signed_in_session(user, next_url)


def pending_login() -> PendingLogin | str:
    """The login waiting for its second factor, or why there is none (MISSING or EXPIRED)."""
    marker = session.get(PENDING)
    try:
        user_id, age = uuid.UUID(marker["user"]), time.time() - int(marker["at"])
    except (TypeError, KeyError, ValueError):
        session.pop(PENDING, None)
        return MISSING
    if not 0 <= age <= PENDING_SECONDS:
        session.pop(PENDING, None)
        return EXPIRED
    user = get_session().get(User, user_id)
    if user is None or not user.is_active:  # deactivated since the password was checked
        session.pop(PENDING, None)
        return MISSING
    return PendingLogin(user, safe_next(marker.get("next")))


def restart_login(reason: str):
    """Back to the password form, saying why."""
    session.pop(PENDING, None)
    flash(RESTART_MESSAGES[reason])
    return redirect(url_for("auth.login"), code=303)


def start_signed_in_session(user: User, second_factor: bool) -> None:
    """Clear the Flask session (no fixation) and open a server-side session for this user."""
    db = get_session()
    session.clear()
    sessions.open_session(db, user, second_factor=second_factor)
    trail.record(Event.LOGIN, user, actor=user, detail={"via": request.endpoint, "second_factor": second_factor})
    db.commit()
    login_user(user)
    log.info("login user=%s second_factor=%s", user.id, second_factor)


def open_signed_in_session(user: User, next_url: str | None, second_factor: bool = False):
    start_signed_in_session(user, second_factor)
    return redirect(safe_next(next_url) or url_for("home.index"))


def safe_next(target: str | None) -> str | None:
    """Only a path on this site: never another host, scheme or protocol-relative URL."""
    if not target or not isinstance(target, str) or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None
