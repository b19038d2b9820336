"""Single sign-on rules: configuring an organization's provider, starting a sign-in, finishing it,
and linking the identity to an account.

Nobody joins an organization by signing in. The account must already exist in the organization
whose provider vouched for the person (invited or created by its administrator). The first time,
the identity is linked to that account if the provider's *verified* e-mail equals the account's
and its domain is one the organization allows; from then on the link (issuer, subject) decides,
never the e-mail. Services take the session and never commit; the caller commits even after a
failure, so that a used state stays used.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.auth import oidc
from portal.crypto import KeyRing, decrypt_field, encrypt_field, new_data_key, unwrap_data_key, wrap_data_key
from portal.db import new_id
from portal.errors import ServiceError
from portal.models import IdentityProvider, LinkedIdentity, Organization, PendingSsoLogin, User

PENDING_TTL = timedelta(minutes=10)
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


class SsoFailure(Exception):
    """A sign-in that did not complete. `code` goes to the log; the person sees a generic page."""

    def __init__(self, code: str, status: int = 401, provider_id: uuid.UUID | None = None, claim: str | None = None):
        super().__init__(code)
        self.code, self.status, self.provider_id, self.claim = code, status, provider_id, claim


@dataclass(frozen=True)
class Started:
    url: str  # the provider's authorization URL, with this sign-in's state, nonce and PKCE challenge


# -- configuration ------------------------------------------------------------------------------
def configure(db: Session, ring: KeyRing, org: Organization, issuer: str, client_id: str, client_secret: str,
              allowed_domains: list[str], enabled: bool = True, allow_http_loopback: bool = False) -> IdentityProvider:
    """Create or replace the organization's provider. Raises ServiceError naming the bad field."""
    issuer, client_id = (issuer or "").strip(), (client_id or "").strip()
    problem = oidc.check_url(issuer, allow_http_loopback)
    if problem or len(issuer) > 255 or "?" in issuer:
        raise ServiceError(f"The issuer must be the provider's https address ({problem or 'no query'}).", "issuer")
    if not client_id or len(client_id) > 255:
        raise ServiceError("Give the client id the provider issued (at most 255 characters).", "client_id")
    if not client_secret or len(client_secret) > 1024:
        raise ServiceError("Give the client secret the provider issued (at most 1024 characters).", "client_secret")
    domains = sorted({(d or "").strip().lower().rstrip(".") for d in allowed_domains})
    bad = [d for d in domains if not _DOMAIN.fullmatch(d)]
    if bad or not domains:
        raise ServiceError("Give at least one allowed e-mail domain, like hospital.example.", "allowed_domains")
    provider = db.scalar(select(IdentityProvider).where(IdentityProvider.organization_id == org.id))
    if provider is None:
        provider = IdentityProvider(id=new_id(), organization_id=org.id)
        db.add(provider)
    elif provider.issuer != issuer:
        # Identities vouched for by the old issuer sign nobody in any more; pending sign-ins end.
        db.execute(delete(PendingSsoLogin).where(PendingSsoLogin.provider_id == provider.id))
    provider.issuer, provider.client_id, provider.allowed_domains, provider.enabled = issuer, client_id, domains, enabled
    _seal_secret(ring, provider, client_secret)
    db.flush()
    return provider


def provider_for(db: Session, org_id: uuid.UUID) -> IdentityProvider | None:
    """The organization's provider, if single sign-on is on for it and the organization is active."""
    provider = db.scalar(select(IdentityProvider).where(IdentityProvider.organization_id == org_id))
    org = db.get(Organization, org_id)
    return provider if provider and provider.enabled and org and org.active else None


def organizations_for_domain(db: Session, domain: str) -> list[Organization]:
    """Active organizations whose enabled provider accepts this e-mail domain (not personal: a domain)."""
    domain = (domain or "").strip().lower()
    rows = db.execute(select(IdentityProvider, Organization)
                      .join(Organization, Organization.id == IdentityProvider.organization_id)
                      .where(IdentityProvider.enabled.is_(True), Organization.active.is_(True))
                      .order_by(Organization.name))
    return [org for provider, org in rows if domain in provider.allowed_domains]


@dataclass(frozen=True)
class Summary:
    """What an administrator may see of the configuration: never the secret."""

    issuer: str
    client_id: str
    allowed_domains: tuple[str, ...]
    enabled: bool
    linked_accounts: int


def summary(db: Session, org_id: uuid.UUID) -> Summary | None:
    provider = db.scalar(select(IdentityProvider).where(IdentityProvider.organization_id == org_id))
    if provider is None:
        return None
    linked = db.scalar(select(func.count()).select_from(LinkedIdentity).join(User, User.id == LinkedIdentity.user_id)
                       .where(User.organization_id == org_id, LinkedIdentity.issuer == provider.issuer))
    return Summary(provider.issuer, provider.client_id, tuple(provider.allowed_domains), provider.enabled, linked)


def _context(provider: IdentityProvider) -> bytes:
    return f"identity_provider:{provider.id}:client_secret".encode()


def _seal_secret(ring: KeyRing, provider: IdentityProvider, secret: str) -> None:
    dek = new_data_key()
    provider.kek_id, provider.wrapped_key = wrap_data_key(ring, dek, _context(provider))
    provider.client_secret_enc = encrypt_field(dek, secret, _context(provider))


def client_secret(ring: KeyRing, provider: IdentityProvider) -> str:
    dek = unwrap_data_key(ring, provider.kek_id, provider.wrapped_key, _context(provider))
    return decrypt_field(dek, provider.client_secret_enc, _context(provider))


def rewrap_secrets(db: Session, ring: KeyRing) -> int:
    """Re-wrap every provider's data key under the ring's current key; how many moved. Re-runnable."""
    moved = 0
    for provider in db.scalars(select(IdentityProvider).where(IdentityProvider.kek_id != ring.current_id)):
        dek = unwrap_data_key(ring, provider.kek_id, provider.wrapped_key, _context(provider))
        provider.kek_id, provider.wrapped_key = wrap_data_key(ring, dek, _context(provider))
        moved += 1
    return moved


def _client(ring: KeyRing, provider: IdentityProvider, redirect_uri: str) -> oidc.Client:
    return oidc.Client(issuer=provider.issuer, client_id=provider.client_id,
                       client_secret=client_secret(ring, provider), redirect_uri=redirect_uri)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# -- signing in ---------------------------------------------------------------------------------
def begin(db: Session, ring: KeyRing, directory: oidc.Directory, provider: IdentityProvider, browser: str,
          redirect_uri: str, next_url: str | None, now: datetime) -> Started:
    """Record a pending sign-in for this browser and return where to send it."""
    db.execute(delete(PendingSsoLogin).where(PendingSsoLogin.created_at < now - PENDING_TTL))
    try:
        request = oidc.authorization_request(directory, _client(ring, provider, redirect_uri))
    except oidc.OidcError as error:
        raise SsoFailure(error.code, 401, provider.id, error.claim) from None
    db.add(PendingSsoLogin(state_hash=_hash(request.state), browser_hash=_hash(browser), provider_id=provider.id,
                           nonce=request.nonce, code_verifier=request.code_verifier, next_url=next_url,
                           created_at=now))
    return Started(request.url)


def finish(db: Session, ring: KeyRing, directory: oidc.Directory, params: dict, browser: str | None,
           redirect_uri: str, now: datetime) -> tuple[User, str | None]:
    """The account this callback signs in, and where to go next; SsoFailure for every refusal.

    The pending sign-in is deleted first, whatever follows: a state is good for one callback.
    """
    state = params.get("state")
    if not state or not browser or len(state) > 256:
        raise SsoFailure("no_pending_state", 400)
    pending = db.get(PendingSsoLogin, _hash(state))
    if pending is None:
        raise SsoFailure("unknown_state", 400)
    # Only the request that deletes the row may use it (two callbacks racing with one state).
    if db.execute(delete(PendingSsoLogin).where(PendingSsoLogin.state_hash == pending.state_hash)).rowcount != 1:
        raise SsoFailure("unknown_state", 400)
    if not hmac.compare_digest(pending.browser_hash, _hash(browser)):
        raise SsoFailure("other_browser", 400, pending.provider_id)
    if pending.created_at < now - PENDING_TTL:
        raise SsoFailure("state_expired", 400, pending.provider_id)
    provider = db.get(IdentityProvider, pending.provider_id)
    if provider is None or provider_for(db, provider.organization_id) is None:
        raise SsoFailure("provider_disabled", 401, pending.provider_id)
    try:
        identity = oidc.identify(directory, _client(ring, provider, redirect_uri), params, pending.nonce,
                                 pending.code_verifier)
    except oidc.OidcError as error:
        raise SsoFailure(error.code, 401, provider.id, error.claim) from None
    return link(db, provider, identity, now), pending.next_url


def link(db: Session, provider: IdentityProvider, identity: oidc.Identity, now: datetime) -> User:
    """The organization's account for this identity, linking it on first use; SsoFailure otherwise."""
    def fail(code: str) -> SsoFailure:
        return SsoFailure(code, 401, provider.id)

    linked = db.scalar(select(LinkedIdentity).where(LinkedIdentity.issuer == provider.issuer,
                                                    LinkedIdentity.subject == identity.subject))
    if linked is not None:
        user = linked.user
        if user.organization_id != provider.organization_id:
            raise fail("linked_to_other_organization")
    else:
        if not identity.email or not identity.email_verified:
            raise fail("email_not_verified")
        if identity.email.rpartition("@")[2] not in provider.allowed_domains:
            raise fail("domain_not_allowed")
        user = db.scalar(select(User).where(User.email == identity.email,
                                            User.organization_id == provider.organization_id))
        if user is None:
            raise fail("not_provisioned")
        if db.scalar(select(LinkedIdentity.id).where(LinkedIdentity.user_id == user.id,
                                                     LinkedIdentity.issuer == provider.issuer)):
            raise fail("account_linked_to_other_subject")
    if not user.is_active:
        raise fail("account_inactive")
    if linked is None:
        linked = LinkedIdentity(user_id=user.id, issuer=provider.issuer, subject=identity.subject, linked_at=now)
        try:
            with db.begin_nested():
                db.add(linked)
        except IntegrityError:  # the same first sign-in, finishing twice at once
            raise fail("link_conflict") from None
    linked.last_used_at = now
    user.last_login_at = now
    return user
