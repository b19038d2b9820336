"""Single sign-on: an organization's OpenID provider, the identities linked to accounts, and the
sign-ins under way.

An account is found by the (issuer, subject) pair its identity provider vouches for, never by an
e-mail address once linked. The client secret is stored only sealed (AES-GCM under its own data
key, wrapped by the key-encryption key ring), bound to the provider row's id. A pending sign-in
is keyed by the hash of its `state`, so a database reader cannot complete someone else's login,
and is deleted when the callback uses it: a state works once.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, new_id, utcnow
from portal.models.user import User


class IdentityProvider(Base):
    """One OpenID provider per organization; only its accounts may sign in through it."""

    __tablename__ = "identity_providers"
    __table_args__ = (CheckConstraint("length(issuer) BETWEEN 8 AND 255", name="issuer_length"),
                      CheckConstraint("length(client_id) BETWEEN 1 AND 255", name="client_id_length"))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"),
                                                       unique=True)
    issuer: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    kek_id: Mapped[str] = mapped_column(String(32), index=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    client_secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    allowed_domains: Mapped[list] = mapped_column(JSON)  # lower-case domain names, e.g. ["hospital.example"]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<IdentityProvider {self.id} org={self.organization_id}>"


class LinkedIdentity(Base):
    """The identity (issuer, subject) that signs in as this account; one per account per issuer."""

    __tablename__ = "linked_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"), UniqueConstraint("user_id", "issuer"))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined")


class PendingSsoLogin(Base):
    """A sign-in sent to the provider and not yet back: what the callback must check it against."""

    __tablename__ = "sso_pending_logins"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The browser that started it (hash of a random value in its session): a callback URL carried
    # to another browser does not complete there.
    browser_hash: Mapped[str] = mapped_column(String(64))
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_providers.id", ondelete="CASCADE"),
                                                   index=True)
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    next_url: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
