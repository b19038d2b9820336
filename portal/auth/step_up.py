"""Step-up: an export needs the second factor proved on this session within the last FRESH.

    @bp.get("/city/export/<table>.csv")
    @fresh_second_factor
    @require(Action.DASHBOARD_EXPORT)
    def export(table): ...

Placed above `@require`, it is part of authentication (like the login check) and comes before
the policy decision: whoever asks for an export -- a police account included -- proves a code
first, and is then allowed or refused by the policy as before. A visitor is left to `require`,
which sends them to the login page. Without a fresh code the browser goes to the step-up page
(htmx is told so in HX-Redirect) and comes back to the same URL afterwards.
"""
from __future__ import annotations

from datetime import timedelta
from functools import wraps

from flask import redirect, request, url_for
from flask_login import current_user

from portal.auth import sessions
from portal.db import get_session

FRESH = timedelta(minutes=5)
STEP_UP_ATTR = "__portal_step_up__"


def is_fresh() -> bool:
    age = sessions.second_factor_age(get_session(), current_user.session_token)
    return age is not None and age <= FRESH


def fresh_second_factor(view):
    @wraps(view)
    def wrapper(**kwargs):
        if current_user.is_authenticated and not is_fresh():
            return _to_step_up()
        return view(**kwargs)

    setattr(wrapper, STEP_UP_ATTR, True)
    return wrapper


def needs_step_up(view) -> bool:
    return bool(getattr(view, STEP_UP_ATTR, False))


def _to_step_up():
    from portal.web.errors import render_error, wants_json
    from portal.web.htmx import is_htmx
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    url = url_for("auth.step_up", next=target)
    if is_htmx():
        return "", 401, {"HX-Redirect": url}
    if wants_json():
        return render_error(401, "Confirm your second factor first.")
    return redirect(url)
