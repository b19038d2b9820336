"""Rules for organizations, zones and accounts. Services never commit and never read the request.

Invariants kept here:
- e-mails are unique regardless of case (normalized before they reach the database);
- nobody deactivates themselves or changes their own role (an organization cannot lock itself out);
- a police partner's account is never a portal administrator;
- a new account gets its password from the person through an invitation link, never from an
  administrator (only the CLI and the demo data set one directly).
"""
from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.auth import lockout, mfa, tokens
from portal.auth.passwords import hash_password, password_problem
from portal.auth.service import normalize_email
from portal.auth.sessions import close_all_sessions
from portal.crypto import KeyRing
from portal.errors import ServiceError
from portal.models import ORG_KINDS, ROLES, Organization, User, Zone


def create_zone(db: Session, code: str, label: str) -> Zone:
    code, label = (code or "").strip().upper(), (label or "").strip()
    if not code or len(code) > 16 or not code.replace("-", "").isalnum():
        raise ServiceError("Use 1 to 16 letters, digits or dashes.", "code")
    if not label or len(label) > 80:
        raise ServiceError("Give the zone a label of at most 80 characters.", "label")
    if db.scalar(select(Zone.id).where(Zone.code == code)):
        raise ServiceError("A zone with this code already exists.", "code")
    zone = Zone(code=code, label=label)
    db.add(zone)
    _flush(db, "A zone with this code already exists.", "code")
    return zone


def create_organization(db: Session, name: str, kind: str, zone_ids: list[uuid.UUID]) -> Organization:
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise ServiceError("Give the organization a name of at most 120 characters.", "name")
    if kind not in ORG_KINDS:
        raise ServiceError("Choose the organization's kind.", "kind")
    if db.scalar(select(Organization.id).where(func.lower(Organization.name) == name.lower())):
        raise ServiceError("An organization with this name already exists.", "name")
    zones = list(db.scalars(select(Zone).where(Zone.id.in_(zone_ids)))) if zone_ids else []
    if len(zones) != len(set(zone_ids)):
        raise ServiceError("Choose zones from the list.", "zones")
    org = Organization(name=name, kind=kind, zones=zones)
    db.add(org)
    _flush(db, "An organization with this name already exists.", "name")
    return org


def create_user(db: Session, org: Organization, email: str, display_name: str, role: str,
                password: str | None = None, portal_admin: bool = False) -> tuple[User, str | None]:
    """Create an account; without `password` it has none until the person sets one through a link
    (invite_user). Returns (user, None): the second item is where a temporary password used to be."""
    email = normalize_email(email)
    display_name = (display_name or "").strip()
    if "@" not in email or len(email) > 254:
        raise ServiceError("Enter a valid e-mail address.", "email")
    if not display_name or len(display_name) > 120:
        raise ServiceError("Enter a display name of at most 120 characters.", "display_name")
    if role not in ROLES:
        raise ServiceError("Choose a role.", "role")
    if portal_admin and org.kind == "police_partner":
        raise ServiceError("A police partner account cannot administer the portal.", "portal_admin")
    if password is not None and (problem := password_problem(password)):
        raise ServiceError(problem, "password")
    if db.scalar(select(User.id).where(User.email == email)):
        raise ServiceError("An account with this e-mail already exists.", "email")
    user = User(email=email, display_name=display_name, organization=org, role=role,
                is_portal_admin=portal_admin, password_hash=hash_password(password) if password else None)
    db.add(user)
    _flush(db, "An account with this e-mail already exists.", "email")
    return user, None


def invite_user(db: Session, ring: KeyRing, org: Organization, email: str, display_name: str, role: str) -> User:
    """Create an account without a password and mail its owner a link to choose one (7 days)."""
    user, _ = create_user(db, org, email, display_name, role)
    tokens.issue(db, ring, user, tokens.INVITE)
    return user


def resend_invitation(db: Session, ring: KeyRing, user: User) -> User:
    """A new invitation link; the previous one stops working."""
    if user.password_hash is not None:
        raise ServiceError("This account has already chosen its password.", "invitation")
    if not user.is_active:
        raise ServiceError("Reactivate the account before inviting it again.", "invitation")
    tokens.issue(db, ring, user, tokens.INVITE)
    return user


def unlock_sign_in(db: Session, user: User) -> User:
    """Lift the lockout that repeated failed sign-ins put on this account's address."""
    lockout.clear(db, user.email)
    user.failed_login_count = 0
    return user


def reset_second_factor(db: Session, actor: User, user: User) -> User:
    """For someone who lost both their authenticator and their recovery codes: the second factor
    and its recovery codes go, every session of the account ends, and the next sign-in sets up a
    new one (where the account needs it). Never one's own: that is done from the account page."""
    if user.id == actor.id:
        raise ServiceError("Use your account page to change your own two-step sign-in.", "second_factor")
    mfa.remove(db, user)
    close_all_sessions(db, user)
    return user


def set_role(db: Session, actor: User, user: User, role: str) -> User:
    if role not in ROLES:
        raise ServiceError("Choose a role.", "role")
    if user.id == actor.id:
        raise ServiceError("You cannot change your own role; ask another administrator.", "role")
    user.role = role
    close_all_sessions(db, user)  # the new role takes effect at the next sign-in, everywhere
    return user


def set_active(db: Session, actor: User, user: User, active: bool) -> User:
    if user.id == actor.id:
        raise ServiceError("You cannot deactivate your own account.", "active")
    user.active = active
    if not active:
        close_all_sessions(db, user)  # deactivation ends every session at once
        tokens.revoke(db, user, None)  # and every invitation or reset link it was sent
    return user


def _flush(db: Session, message: str, field: str) -> None:
    """Flush now so a concurrent duplicate fails here, as a form error, not at commit.

    The caller rolls the whole unit of work back on ServiceError, so nothing is written.
    """
    try:
        db.flush()
    except IntegrityError:
        raise ServiceError(message, field) from None


INTAKE = ("open", "waitlist", "at_capacity")


def set_intake(db: Session, org: Organization, intake: str) -> Organization:
    """Whether the organization is taking referrals: open, waitlisting or at capacity."""
    if intake not in INTAKE:
        raise ServiceError("Choose whether you are taking referrals.", "intake")
    org.intake = intake
    return org
