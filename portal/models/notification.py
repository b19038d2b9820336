"""The mail outbox. A notification is written in the same transaction as the change it announces
and delivered afterwards, so a mail server that is down never loses or blocks a referral.
It holds a link and a status only: never a personal detail. An account mail (invitation,
password reset) points at its token instead of a referral."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, new_id, one_of, utcnow


ACCOUNT_KINDS = ("invitation", "password_reset")
KINDS = ("new_referral", "status_changed", *ACCOUNT_KINDS)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(one_of("kind", KINDS), name="kind"),
        CheckConstraint("(referral_id IS NULL) <> (account_token_id IS NULL)", name="one_subject"),
        Index("ix_notifications_pending", "sent_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(20))
    recipient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    referral_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"))
    account_token_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("account_tokens.id", ondelete="CASCADE"),
                                                               index=True)
    status: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A run that claimed the row is sending it until then; past it, that run is taken for dead.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(80))  # an exception class name, never content
