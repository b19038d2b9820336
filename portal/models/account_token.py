"""Invitation and password-reset tokens, and the per-address sign-in lockout state.

A token is 32 random bytes. The database keeps its SHA-256 for lookup; until its mail has left
the outbox it also keeps the token wrapped by the key-encryption key (the outbox composes the
mail after the response), and forgets it once the mail is sent or the token is spent or revoked.
A stolen database copy therefore holds no usable link.

The lockout state is keyed by a hash of the normalized e-mail address, not by a user: an address
with no account is locked exactly like one with an account, so nothing tells the two apart.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, new_id, one_of, utcnow
from portal.models.user import User

TOKEN_PURPOSES = ("invite", "reset")


class AccountToken(Base):
    __tablename__ = "account_tokens"
    __table_args__ = (CheckConstraint(one_of("purpose", TOKEN_PURPOSES), name="purpose"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(8))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The raw token wrapped by the KEK, only while its mail waits in the outbox.
    kek_id: Mapped[str | None] = mapped_column(String(32))
    wrapped_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # replaced by a newer one, or moot

    user: Mapped[User] = relationship(lazy="joined")


class LoginThrottle(Base):
    """Consecutive failed sign-ins for one e-mail address (known or not) and the lock they earned."""

    __tablename__ = "login_throttles"
    __table_args__ = (CheckConstraint("failures >= 0", name="failures"),)

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
