"""Administration pages. Thin: forms in, service call, commit, render."""
from __future__ import annotations

import uuid

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from wtforms import SelectChoice

from portal.admin import service
from portal.admin.forms import KIND_LABELS, ROLE_LABELS, ActiveForm, OrganizationForm, RoleForm, UserForm, ZoneForm
from portal.audit import trail
from portal.audit.events import Event
from portal.auth import lockout, mfa, sso, tokens
from portal.db import get_session
from portal.errors import ServiceError
from portal.models import Organization, User, Zone
from portal.policy import Action, decide, decide_many
from portal.policy.gate import require
from portal.web.htmx import is_htmx

bp = Blueprint("admin", __name__, url_prefix="/admin")


def load_organization(org_id: uuid.UUID):
    return get_session().get(Organization, org_id)


def load_user(user_id: uuid.UUID):
    return get_session().get(User, user_id)


@bp.app_context_processor
def _labels():
    return {"KIND_LABELS": KIND_LABELS, "ROLE_LABELS": ROLE_LABELS}


def _keyring():
    return current_app.extensions["portal.keyring"]


def _fail(form, error: ServiceError) -> None:
    get_session().rollback()
    field = getattr(form, error.field, None) if error.field else None
    (field.errors if field is not None else form.form_errors).append(error.message)


# -- organizations ---------------------------------------------------------------------------
@bp.get("/organizations")
@require(Action.ORG_LIST)
def organizations():
    db = get_session()
    counts = dict(db.execute(select(User.organization_id, func.count()).group_by(User.organization_id)).all())
    orgs = db.scalars(select(Organization).order_by(Organization.name)).all()
    return render_template("admin/organizations.html", orgs=orgs, counts=counts)


@bp.route("/organizations/new", methods=["GET", "POST"])
@require(Action.ORG_CREATE)
def create_organization():
    db = get_session()
    form = OrganizationForm()
    form.zones.choices = [SelectChoice(str(z.id), f"{z.code} — {z.label}") for z in db.scalars(select(Zone).order_by(Zone.code))]
    if form.validate_on_submit():
        try:
            zone_ids = [uuid.UUID(z) for z in form.zones.data]
        except ValueError:
            abort(400)
        try:
            org = service.create_organization(db, form.name.data, form.kind.data, zone_ids)
            admin = service.invite_user(db, _keyring(), org, form.admin_email.data, form.admin_name.data, "org_admin")
        except ServiceError as error:
            if error.field == "email":
                error.field = "admin_email"
            elif error.field == "display_name":
                error.field = "admin_name"
            _fail(form, error)
        else:
            db.commit()
            return render_template("admin/account_created.html", user=admin, org=org)
    return render_template("admin/organization_form.html", form=form), 400 if form.errors else 200


@bp.get("/organizations/<uuid:org_id>")
@require(Action.ORG_VIEW, load=load_organization)
def organization(org, org_id):
    can_create, can_set_intake = (d.allowed for d in decide_many(current_user, (Action.USER_CREATE,
                                                                                 Action.ORG_SET_INTAKE), org))
    return render_template("admin/organization.html", org=org, rows=[_row(u) for u in org.users],
                           can_create=can_create, can_set_intake=can_set_intake,
                           sso=sso.summary(get_session(), org.id))


@bp.post("/organizations/<uuid:org_id>/intake")
@require(Action.ORG_SET_INTAKE, load=load_organization)
def set_intake(org, org_id):
    try:
        service.set_intake(get_session(), org, request.form.get("intake", ""))
    except ServiceError as error:
        abort(400, error.message)
    get_session().commit()
    return redirect(url_for("referrals.inbox"), code=303)


# -- zones -----------------------------------------------------------------------------------
@bp.get("/zones")
@require(Action.ZONE_LIST)
def zones():
    return _zones_page(ZoneForm())


@bp.post("/zones")
@require(Action.ZONE_CREATE)
def create_zone():
    form = ZoneForm()
    if form.validate_on_submit():
        try:
            service.create_zone(get_session(), form.code.data, form.label.data)
        except ServiceError as error:
            _fail(form, error)
        else:
            get_session().commit()
            return redirect(url_for("admin.zones"), code=303)
    return _zones_page(form), 400


def _zones_page(form):
    zones = get_session().scalars(select(Zone).order_by(Zone.code)).all()
    return render_template("admin/zones.html", zones=zones, form=form)


# -- accounts --------------------------------------------------------------------------------
@bp.route("/organizations/<uuid:org_id>/users/new", methods=["GET", "POST"])
@require(Action.USER_CREATE, load=load_organization)
def create_user(org, org_id):
    form = UserForm()
    if form.validate_on_submit():
        db = get_session()
        try:
            user = service.invite_user(db, _keyring(), org, form.email.data, form.display_name.data, form.role.data)
        except ServiceError as error:
            _fail(form, error)
        else:
            db.commit()
            return render_template("admin/account_created.html", user=user, org=org)
    return render_template("admin/user_form.html", form=form, org=org), 400 if form.errors else 200


@bp.post("/users/<uuid:user_id>/role")
@require(Action.USER_MANAGE, load=load_user)
def change_role(user, user_id):
    form = RoleForm()
    return _update_user(user, form, lambda db: service.set_role(db, current_user, user, form.role.data))


@bp.post("/users/<uuid:user_id>/active")
@require(Action.USER_MANAGE, load=load_user)
def change_active(user, user_id):
    form = ActiveForm()
    return _update_user(user, form, lambda db: service.set_active(db, current_user, user, form.active.data))


@bp.post("/users/<uuid:user_id>/invitation")
@require(Action.USER_MANAGE, load=load_user)
def resend_invitation(user, user_id):
    """A new invitation link by mail; the previous link stops working."""
    return _account_action(user, lambda db: service.resend_invitation(db, _keyring(), user),
                           "A new invitation is on its way; the previous link no longer works.")


@bp.post("/users/<uuid:user_id>/unlock")
@require(Action.USER_MANAGE, load=load_user)
def unlock_sign_in(user, user_id):
    """Lift the lockout after repeated failed sign-ins (the only way besides a password reset)."""
    return _account_action(user, lambda db: service.unlock_sign_in(db, user), "Sign-in is unlocked for this account.")


@bp.post("/users/<uuid:user_id>/second-factor/reset")
@require(Action.USER_MANAGE, load=load_user)
def reset_second_factor(user, user_id):
    """For someone who lost their authenticator and their recovery codes; their sessions end."""
    def reset(db):
        service.reset_second_factor(db, current_user, user)
        trail.record(Event.SECOND_FACTOR_RESET, user)
    return _account_action(user, reset, "Two-step sign-in is reset: the account sets up a new authenticator "
                                        "at its next sign-in, and every session of it has ended.")


def _account_action(user, change, done: str):
    """A one-button change (the CSRF check has passed globally): do it, then back to the list."""
    db = get_session()
    try:
        change(db)
    except ServiceError as error:
        db.rollback()
        abort(400, error.message)
    db.commit()
    flash(done)
    return redirect(url_for("admin.organization", org_id=user.organization_id), code=303)


def _update_user(user, form, change):
    db = get_session()
    error = None
    if form.validate_on_submit():
        try:
            change(db)
            db.commit()
        except ServiceError as exc:
            db.rollback()
            db.refresh(user)
            error = exc.message
    else:
        error = "The change could not be read; reload the page and try again."
    if is_htmx():
        # 200 even for a refused change: htmx swaps only 2xx, and the row shows the error.
        return render_template("partials/user_row.html", row=_row(user), error=error)
    if error:
        abort(400, error)
    return redirect(url_for("admin.organization", org_id=user.organization_id), code=303)


def _row(user: User) -> dict:
    """What the users table shows of one account: no password data, no session data."""
    return {"id": user.id, "email": user.email, "display_name": user.display_name, "role": user.role,
            "active": user.active, "portal_admin": user.is_portal_admin,
            "last_login_at": user.last_login_at, "is_self": user.id == current_user.id,
            "invitation": tokens.invitation_status(get_session(), user),
            "locked": user.failed_login_count >= lockout.THRESHOLD,
            "second_factor": mfa.is_enrolled(get_session(), user),
            "can_manage": user.id != current_user.id and decide(current_user, Action.USER_MANAGE, user).allowed}
