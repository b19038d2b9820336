"""Read-side queries for the referral lists. They mirror the policies' relationship rules so
that a list holds only what its reader may see; every row is still projected through the PDP."""
from __future__ import annotations

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session, selectinload

from portal.models import Referral, User
from portal.referrals import codes

PAGE_SIZE = 50
# Urgent first, newest first, in the order of the partial index ix_referrals_inbox_open: urgency
# is "routine" or "urgent" (a CHECK constraint), so descending puts urgent first. The open
# statuses are written into the SQL, not bound, so that a generic plan can use the index too.
INBOX_ORDER = (Referral.urgency.desc(), Referral.created_at.desc())
OPEN = Referral.status.in_(bindparam("open_statuses", codes.OPEN_STATUSES, expanding=True, literal_execute=True))
# What a list row reads besides the referral: whether it was handed off, its assignee, and the
# data key that opens the preferred name (vault.data_key finds it in the session). One query
# each for the whole page, never one per row (tests/test_query_counts.py).
ROW_LOADS = (selectinload(Referral.children).lazyload("*"), selectinload(Referral.assigned_to),
             selectinload(Referral.data_key))


def inbox(db: Session, user: User, status: str | None = None, limit: int = PAGE_SIZE, offset: int = 0):
    """My team's referrals: urgent first, newest first. Staff see theirs and the unassigned."""
    query = select(Referral).where(Referral.receiver_org_id == user.organization_id)
    if user.role == "staff":
        query = query.where(or_(Referral.assigned_to_id.is_(None), Referral.assigned_to_id == user.id))
    if status:
        query = query.where(Referral.status == status)
    else:
        query = query.where(OPEN)
    query = query.order_by(*INBOX_ORDER).limit(limit).offset(offset)
    return list(db.scalars(query.options(*ROW_LOADS)).unique())


def new_in_inbox(db: Session, user: User) -> int:
    """How many referrals wait for my team to accept or decline."""
    query = select(func.count()).select_from(Referral).where(
        Referral.receiver_org_id == user.organization_id, Referral.status == "sent")
    if user.role == "staff":
        query = query.where(or_(Referral.assigned_to_id.is_(None), Referral.assigned_to_id == user.id))
    return db.scalar(query)


def sent(db: Session, user: User, limit: int = PAGE_SIZE, offset: int = 0):
    """What my organization sent, newest first (the closed loop)."""
    query = (select(Referral).where(Referral.sender_org_id == user.organization_id)
             .order_by(Referral.created_at.desc()).limit(limit).offset(offset))
    return list(db.scalars(query.options(*ROW_LOADS)).unique())
