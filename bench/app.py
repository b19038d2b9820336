"""The portal as the benchmark serves it: the production app plus two baseline endpoints.

`gunicorn bench.app:app` serves everything `portal.wsgi:app` serves, and also

    GET /bench/baseline/inbox?user=<id>                   the CVI inbox page (50 rows)
    GET /bench/baseline/referrals/<id>?user=<id>          a referral's page

Each runs the same queries and renders the same template as the real page, without the parts
whose cost the benchmark measures: no session lookup (the user is read by id), no policy
decision (a fixed set of allowed actions, that of the team's own member), no decryption (no
data key is read; the person's fields are a fixed placeholder), no audit event. They are
registered only here, never by portal.create_app: they show referrals to anyone who asks.
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

from flask import Blueprint, abort, render_template, request

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from portal import create_app  # noqa: E402
from portal.db import get_session  # noqa: E402
from portal.models import Referral, User  # noqa: E402
from portal.policy import Action  # noqa: E402
from portal.policy.gate import public  # noqa: E402
from portal.policy.projection import REFERRAL_WORK, project_referral  # noqa: E402
from portal.policy.actions import REFERRAL_VIEWS  # noqa: E402
from portal.referrals import queries, service  # noqa: E402
from portal.referrals.views import _fingerprint  # noqa: E402

bp = Blueprint("bench_baseline", __name__, url_prefix="/bench/baseline")

# What a member of the receiving team may do with a working referral (the real pages decide it).
TEAM_MEMBER = frozenset(REFERRAL_VIEWS + REFERRAL_WORK) - {Action.REFERRAL_VIEW_ACCESS_HISTORY}
# The same set without the categories that make the projection read a data key and decrypt.
PERSONAL = {Action.REFERRAL_VIEW_CONTACT, Action.REFERRAL_VIEW_NOTES, Action.REFERRAL_VIEW_CONTACT_LOG}
PLACEHOLDER = {"preferred_name": "Placeholder P.", "phone": "+15550000000", "best_time": "evenings",
               "language": "English", "safe_to_text": True, "safe_voicemail": False, "code_word": None}


def _user() -> User:
    try:
        user = get_session().get(User, uuid.UUID(request.args.get("user", "")))
    except ValueError:
        user = None
    if user is None:
        abort(404)
    return user


@bp.get("/inbox")
@public
def inbox():
    db = get_session()
    user = _user()
    referrals, waiting = queries.inbox(db, user, None), queries.new_in_inbox(db, user)
    allowed = set(TEAM_MEMBER - {Action.REFERRAL_VIEW_CONTACT})  # the list's only decryption is the name
    rows = [project_referral(db, None, user, referral, allowed, detail=False) for referral in referrals]
    for row in rows:
        row["preferred_name"] = PLACEHOLDER["preferred_name"]
    return render_template("referrals/inbox.html", rows=rows, status=None, waiting=waiting, org=user.organization,
                           swap=False, seen=_fingerprint(referrals, waiting), can_set_intake=user.role != "staff")


@bp.get("/referrals/<uuid:referral_id>")
@public
def detail(referral_id):
    db = get_session()
    user = _user()
    referral = db.get(Referral, referral_id)
    if referral is None:
        abort(404)
    view = project_referral(db, None, user, referral, set(TEAM_MEMBER - PERSONAL))
    # What the receiver side adds, read from the same relationships, minus the decryption.
    view["assigned_to"] = ({"id": str(referral.assigned_to_id), "name": referral.assigned_to.display_name}
                           if referral.assigned_to_id else None)
    view["retaliation_risk"] = referral.retaliation_risk
    view["contact_attempts"] = [{"id": str(a.id), "at": a.at.isoformat(), "outcome": a.outcome,
                                 "worker": a.worker.display_name if a.worker else None, "note": None}
                                for a in referral.contact_attempts]
    view["person"], view["note"] = dict(PLACEHOLDER), None
    view["allowed"] = sorted(a.value for a in TEAM_MEMBER)
    team = db.query(User).filter_by(organization_id=referral.receiver_org_id, active=True) \
        .order_by(User.display_name).all()
    partners = [o for o in service.directory(db) if o.id != referral.receiver_org_id]
    return render_template("referrals/detail.html", r=view, team=team, partners=partners, error=None,
                           consent_names={str(o.id) for o in referral.consent.recipients})


def create_bench_app(config: dict | None = None):
    """`gunicorn 'bench.app:create_bench_app()'`: settings from PORTAL_*, as portal.wsgi."""
    app = create_app(config)
    app.register_blueprint(bp)
    return app
