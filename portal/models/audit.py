"""The audit log: one row per leaf of an RFC 9162 Merkle tree, and the checkpoints signed over it.

`seq` is the leaf index. It is handed out by incrementing the single `audit_head` row inside the
writer's transaction, so concurrent writers queue on that row: no gap (a rolled-back writer
rolls its increment back too), no fork, no duplicate index. Rows hold ids and codes only, never
a personal field value. The application never updates or deletes them (on PostgreSQL a trigger
refuses it, and the application role is granted INSERT and SELECT only: see portal/audit/grants.py).
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, LargeBinary, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, one_of, utcnow

DECISIONS = ("allow", "deny")


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint(one_of("decision", DECISIONS), name="decision"),
        CheckConstraint("seq >= 0", name="seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Ids, not foreign keys: the log outlives the rows it names and must never block a delete.
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(64), index=True)
    decision: Mapped[str] = mapped_column(String(8))
    policy_ids: Mapped[str] = mapped_column(String(255), default="")  # comma-separated, sorted
    request_id: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON: table, parameters, counts


class AuditHead(Base):
    """The one row whose `size` is the number of leaves: the lock every appender queues on."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"), CheckConstraint("size >= 0", name="size"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, default=1)
    size: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditCheckpoint(Base):
    """A signed checkpoint as it was handed to the witness (the text is what was signed)."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signed_note: Mapped[str] = mapped_column(Text)
