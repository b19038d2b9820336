"""Reading the audit log for people: a referral's access history, its disclosures, the city's search.

Every row names accounts and organizations by their display names and ids; nothing here reads
an encrypted column.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from portal.db import plan_for_these_values
from portal.models import AuditEvent, Organization, Referral, User
from portal.policy.actions import REFERRAL_VIEWS

PAGE_SIZE = 100
PERSONAL_READS = tuple(a.value for a in REFERRAL_VIEWS[1:])  # every view but the status


@dataclass(frozen=True)
class AuditFilters:
    actor_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    action: str | None = None
    start: date | None = None
    end: date | None = None


def _with_names(query):
    actor, org = aliased(User), aliased(Organization)
    return (query.add_columns(actor.display_name, org.name)
            .outerjoin(actor, actor.id == AuditEvent.actor_id)
            .outerjoin(org, org.id == AuditEvent.organization_id))


def _rows(db: Session, query) -> list[dict]:
    return [{"seq": e.seq, "at": e.at, "actor": actor or ("—" if e.actor_id is None else str(e.actor_id)),
             "organization": org or "—", "action": e.action, "resource_type": e.resource_type,
             "resource_id": e.resource_id, "decision": e.decision, "detail": e.detail}
            for e, actor, org in db.execute(query)]


def access_history(db: Session, referral: Referral) -> list[dict]:
    """Every event about this referral, newest first."""
    query = _with_names(select(AuditEvent)).where(AuditEvent.resource_type == "Referral",
                                                  AuditEvent.resource_id == str(referral.id))
    return _rows(db, query.order_by(AuditEvent.seq.desc()))


def _chain(referral: Referral) -> list[Referral]:
    """The referral and every handoff made from it, in order. Not the ones before it: a team that
    received a handoff accounts for what it passed on, the sender of the original for everything."""
    chain, todo = [], [referral]
    while todo:
        current = todo.pop(0)
        chain.append(current)
        todo.extend(current.children)
    return chain


def disclosures(db: Session, referral: Referral) -> list[dict]:
    """Each organization that received the details: when, under which consent, and who there read
    them (first and last read, how many times), from the audit log."""
    report = []
    for link in _chain(referral):
        consent = link.consent
        reads = db.execute(
            select(func.count(), func.min(AuditEvent.at), func.max(AuditEvent.at))
            .where(AuditEvent.resource_type == "Referral", AuditEvent.resource_id == str(link.id),
                   AuditEvent.action.in_(PERSONAL_READS), AuditEvent.decision == "allow",
                   AuditEvent.organization_id == link.receiver_org_id)).one()
        report.append({
            "referral_id": str(link.id), "from": link.sender.name, "to": link.receiver.name,
            "sent_at": link.created_at, "accepted_at": link.accepted_at, "status": link.status,
            "consent": {"id": str(consent.id), "method": consent.method, "obtained_at": consent.obtained_at,
                        "purpose": consent.purpose, "categories": sorted(consent.categories),
                        "expires_at": consent.expires_at, "revoked_at": consent.revoked_at,
                        "recipients": sorted(o.name for o in consent.recipients)},
            "reads": reads[0], "first_read": reads[1], "last_read": reads[2],
            "purged_at": link.personal_purged_at,
        })
    return report


def search(db: Session, filters: AuditFilters, before: int | None = None) -> tuple[list[dict], int | None]:
    """One page of matching events, newest first, and the `before` cursor of the next page."""
    plan_for_these_values(db)  # a rare action wants its index, a common one the newest events
    query = _with_names(select(AuditEvent))
    if filters.actor_id:
        query = query.where(AuditEvent.actor_id == filters.actor_id)
    if filters.organization_id:
        query = query.where(AuditEvent.organization_id == filters.organization_id)
    if filters.action:
        query = query.where(AuditEvent.action == filters.action)
    if filters.start:
        query = query.where(AuditEvent.at >= datetime.combine(filters.start, time(), timezone.utc))
    if filters.end:
        query = query.where(AuditEvent.at < datetime.combine(filters.end + timedelta(days=1), time(), timezone.utc))
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    rows = _rows(db, query.order_by(AuditEvent.seq.desc()).limit(PAGE_SIZE + 1))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return rows, (rows[-1]["seq"] if more else None)
