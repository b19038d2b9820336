"""Default deny: every endpoint declares the action it performs, or it is refused.

    @bp.get("/admin/organizations/<uuid:org_id>")
    @require(Action.ORG_VIEW, load=load_organization)
    def organization(org, org_id): ...

`load` turns the URL's arguments into the resource (None when there is no such row); the view
then receives it as its first argument. A missing row and a denial on an individual resource
both answer 404, so existence does not leak; a denied page about no individual resource answers
403. Every decision, allowed or denied, is written to the audit log (portal/audit/trail.py).
`@public` is the named, greppable exemption for the short allow-list of open endpoints.
"""
from __future__ import annotations

import logging
from functools import wraps

from flask import abort, current_app, g, request
from flask_login import current_user

from portal.audit import trail
from portal.policy import Action, decide

log = logging.getLogger("portal.policy")

ACTION_ATTR = "__portal_action__"
PUBLIC_ATTR = "__portal_public__"


def require(action: Action, load=None):
    if not isinstance(action, Action):
        raise TypeError("require() takes an Action")

    def decorator(view):
        @wraps(view)
        def wrapper(**kwargs):
            if not current_user.is_authenticated:
                return current_app.login_manager.unauthorized()
            resource = load(**kwargs) if load else None
            if load and resource is None:
                abort(404)
            decision = decide(current_user, action, resource)
            g.decision = decision
            trail.record_decision(action, resource, decision)
            if not decision.allowed:
                log.info("denied action=%s user=%s endpoint=%s", action.value, current_user.id, request.endpoint)
                abort(404 if load else 403)
            return view(resource, **kwargs) if load else view(**kwargs)

        setattr(wrapper, ACTION_ATTR, action)
        return wrapper

    return decorator


def public(view):
    """Exempt a view from the policy gate. Keep this list short and reviewed."""
    setattr(view, PUBLIC_ATTR, True)
    return view


def declared_action(view) -> Action | None:
    return getattr(view, ACTION_ATTR, None)


def is_public(view) -> bool:
    return bool(getattr(view, PUBLIC_ATTR, False))


def init_app(app) -> None:
    @app.before_request
    def _refuse_undeclared_endpoints():
        if request.endpoint is None or request.endpoint == "static":
            return None  # routing 404/405 or a static file
        view = app.view_functions[request.endpoint]
        if declared_action(view) is None and not is_public(view):
            log.error("endpoint %s declares no action; refused", request.endpoint)
            abort(404)
        return None
