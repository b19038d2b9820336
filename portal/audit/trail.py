"""Recording in the web layer: what a request did goes into the log when its transaction commits.

Drafts wait in the request's SQLAlchemy session and are appended in `before_commit`, so each
event commits exactly with the action it records. An event records a decision or a read, not
the action's success (the referral's own history records that), so a rollback keeps the drafts
for the next commit; the end of the request commits whatever is still waiting (a GET that only
read, a denial, a failed step). Nothing here stores a personal value: a
draft holds ids, action names, decisions and declared parameters.
"""
from __future__ import annotations

import secrets

from flask import g, has_request_context, request
from flask_login import current_user
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.audit.log import Draft, append
from portal.db import get_session, utcnow

_DRAFTS = "audit_drafts"


def resource_ref(resource) -> tuple[str, str | None]:
    """The (type, opaque id) an event names; None is the portal itself."""
    if resource is None:
        return "Portal", None
    key = getattr(resource, "id", None)
    if key is None:
        key = getattr(resource, "number", None)
    return type(resource).__name__, None if key is None else str(key)


def add(db: Session, draft: Draft) -> Draft:
    db.info.setdefault(_DRAFTS, []).append(draft)
    return draft


def record(action, resource=None, *, allowed: bool = True, policy_ids=(), detail: dict | None = None,
           actor=None, db: Session | None = None) -> Draft:
    """Queue one event in `db` (the request's session by default), by `actor` (the signed-in user
    by default)."""
    if actor is None and has_request_context() and current_user and current_user.is_authenticated:
        actor = current_user
    rtype, rid = resource_ref(resource)
    return add(db if db is not None else get_session(), Draft(
        action=str(action), resource_type=rtype, resource_id=rid, decision="allow" if allowed else "deny",
        actor_id=getattr(actor, "id", None), organization_id=getattr(actor, "organization_id", None),
        policy_ids=tuple(policy_ids), request_id=request_id(), detail=dict(detail or {})))


def record_decision(action, resource, decision) -> Draft:
    """The gate's decision on this request's action; views may add to it with `note`."""
    draft = record(action, resource, allowed=decision.allowed, policy_ids=decision.policy_ids)
    g.audit_draft = draft
    return draft


def note(**detail) -> None:
    """Add declared, non-personal parameters (a table name, filters) to this request's event."""
    draft = g.get("audit_draft")
    if draft is not None:
        draft.detail.update(detail)


def discard() -> None:
    """This request disclosed nothing after all (an unchanged poll): drop its event."""
    draft = g.pop("audit_draft", None)
    drafts = get_session().info.get(_DRAFTS, [])
    if draft is not None and draft in drafts:
        drafts.remove(draft)


def request_id() -> str | None:
    if not has_request_context():
        return None
    if "request_id" not in g:
        g.request_id = secrets.token_hex(8)
    return g.request_id


@event.listens_for(Session, "before_commit")
def _append_drafts(session: Session) -> None:
    drafts = session.info.get(_DRAFTS)
    if drafts:
        append(session, drafts, utcnow())


@event.listens_for(Session, "after_commit")
def _forget_appended(session: Session) -> None:
    """Only now are they in the log; a commit that fails keeps them for the next one."""
    session.info.pop(_DRAFTS, None)


def init_app(app) -> None:
    @app.after_request
    def _commit_pending_events(response):
        db = g.get("db_session")
        if db is not None and db.info.get(_DRAFTS):
            if response.status_code >= 400:
                db.rollback()  # a failed request's half-done work never rides along; the events do
            db.commit()
        response.headers["X-Request-ID"] = request_id()
        return response
