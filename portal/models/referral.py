"""Referrals, the consent that lets them travel, and everything that happens to them.

Personal fields live only in `personal_enc` and `note_enc` (and contact-attempt notes), encrypted
under the referral's data key in `data_keys`. Deleting that row shreds them: the ciphertext that
remains, in the database and in any backup taken afterwards, can no longer be read.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (Boolean, CheckConstraint, Column, ForeignKey, Index, Integer, LargeBinary, String,
                        Table, Uuid, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, new_id, one_of, utcnow
from portal.models.organization import Organization, Zone
from portal.models.user import User

STATUSES = ("sent", "accepted", "declined", "in_progress", "on_hold", "completed", "cancelled", "revoked")
# The predicates of the partial indexes below; the queries they serve repeat them as literals
# (portal/referrals/queries.py, portal/referrals/maintenance.py), so any plan can use them.
OPEN = "status IN ('sent', 'accepted', 'in_progress', 'on_hold')"
PURGE_DUE = ("status IN ('declined', 'completed', 'cancelled') "
             "AND (personal_enc IS NOT NULL OR note_enc IS NOT NULL OR personal_purged_at IS NULL)")
UNREVOKED = "revoked_at IS NULL"


def partial_index(name: str, *columns: str, where: str) -> Index:
    """The same partial index on PostgreSQL and SQLite (bench/README.md measures each)."""
    return Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))


consent_recipients = Table(
    "consent_recipients",
    Base.metadata,
    Column("consent_id", Uuid, ForeignKey("consents.id", ondelete="CASCADE"), primary_key=True),
    Column("organization_id", Uuid, ForeignKey("organizations.id", ondelete="RESTRICT"), primary_key=True),
)


class Consent(Base):
    """The person's consent: who may receive their details, which categories, until when."""

    __tablename__ = "consents"
    __table_args__ = (
        CheckConstraint(one_of("method", ("verbal", "written", "electronic")), name="method"),
        CheckConstraint("expires_at > obtained_at", name="expires_after_obtained"),
        partial_index("ix_consents_unrevoked_expiry", "expires_at", where=UNREVOKED),  # retention's claim
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    method: Mapped[str] = mapped_column(String(16))
    obtained_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    obtained_at: Mapped[datetime] = mapped_column(UTCDateTime)
    purpose: Mapped[str] = mapped_column(String(40), default="violence_intervention_services")
    data_categories: Mapped[str] = mapped_column(String(80))  # space-separated codes
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    recipients: Mapped[list[Organization]] = relationship(secondary=consent_recipients)

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(self.data_categories.split())

    def active_at(self, when: datetime) -> bool:
        return self.revoked_at is None and self.obtained_at <= when < self.expires_at

    def names(self, org_id: uuid.UUID) -> bool:
        return any(o.id == org_id for o in self.recipients)


referral_services = Table(
    "referral_services",
    Base.metadata,
    Column("referral_id", Uuid, ForeignKey("referrals.id", ondelete="CASCADE"), primary_key=True),
    Column("service", String(40), primary_key=True),
    CheckConstraint(one_of("service", ("intensive_mentoring", "care_management", "conflict_mediation",
                                    "behavioral_health", "life_coaching", "education_housing_employment",
                                    "social_networks")), name="service"),
)


class Referral(Base):
    __tablename__ = "referrals"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status"),
        CheckConstraint(one_of("urgency", ("routine", "urgent")), name="urgency"),
        CheckConstraint(one_of("age_band", ("under_18", "18_24", "25_34", "35_plus")), name="age_band"),
        CheckConstraint(one_of("reason", ("gunshot_wound", "stab_wound", "assault", "other_violent_injury")),
                        name="reason"),
        CheckConstraint("sender_org_id <> receiver_org_id", name="not_to_self"),
        Index("ix_referrals_receiver_status", "receiver_org_id", "status"),
        Index("ix_referrals_sender_created", "sender_org_id", "created_at"),
        Index("ix_referrals_created_at", "created_at"),  # the city dashboard's date windows (bench/README.md)
        # The inbox walks its team's open referrals in page order and stops at a page.
        partial_index("ix_referrals_inbox_open", "receiver_org_id", "urgency", "created_at", where=OPEN),
        partial_index("ix_referrals_purge_due", "closed_at", where=PURGE_DUE),  # retention's claim
        # The city dashboard's response times read their cohort from this index alone (index-only scan,
        # every filter column included); only referrals that were accepted or reached have a duration.
        Index("ix_referrals_response_times", "created_at",
              postgresql_include=["receiver_org_id", "accepted_at", "first_contact_at", "zone_id", "sender_org_id",
                                  "urgency"],
              postgresql_where=text("accepted_at IS NOT NULL OR first_contact_at IS NOT NULL"),
              sqlite_where=text("accepted_at IS NOT NULL OR first_contact_at IS NOT NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    sender_org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"))
    receiver_org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"))
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    assigned_to_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    consent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consents.id", ondelete="RESTRICT"), index=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("referrals.id", ondelete="RESTRICT"), index=True)

    status: Mapped[str] = mapped_column(String(16), default="sent")
    status_reason: Mapped[str | None] = mapped_column(String(40))
    outcome: Mapped[str | None] = mapped_column(String(40))
    urgency: Mapped[str] = mapped_column(String(16))
    zone_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("zones.id", ondelete="RESTRICT"))
    age_band: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    retaliation_risk: Mapped[bool] = mapped_column(Boolean, default=False)  # CVI-side assessment

    personal_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    personal_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    # Two workers acting at once: the second UPDATE matches no row and fails (409), never both.
    __mapper_args__ = {"version_id_col": version}

    sender: Mapped[Organization] = relationship(foreign_keys=[sender_org_id], lazy="joined")
    receiver: Mapped[Organization] = relationship(foreign_keys=[receiver_org_id], lazy="joined")
    assigned_to: Mapped[User | None] = relationship(foreign_keys=[assigned_to_id])
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    consent: Mapped[Consent] = relationship(lazy="joined")
    zone: Mapped[Zone] = relationship(lazy="joined")
    parent: Mapped[Referral | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Referral]] = relationship(back_populates="parent", order_by="Referral.created_at")
    events: Mapped[list[ReferralEvent]] = relationship(back_populates="referral", order_by="ReferralEvent.at",
                                                        cascade="all, delete-orphan")
    contact_attempts: Mapped[list[ContactAttempt]] = relationship(back_populates="referral",
                                                                  order_by="ContactAttempt.at",
                                                                  cascade="all, delete-orphan")
    _services = relationship("ReferralService", cascade="all, delete-orphan", lazy="selectin")
    # Declared so the unit of work inserts the referral before its key; shredding deletes in bulk.
    data_key = relationship("DataKey", uselist=False, passive_deletes=True, viewonly=False)

    @property
    def services(self) -> list[str]:
        return sorted(s.service for s in self._services)


class ReferralService(Base):
    __table__ = referral_services


class ReferralEvent(Base):
    """One status change: who, when, from, to, why (a code, never free text)."""

    __tablename__ = "referral_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_org_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id", ondelete="SET NULL"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str | None] = mapped_column(String(40))

    referral: Mapped[Referral] = relationship(back_populates="events")


class ContactAttempt(Base):
    __tablename__ = "contact_attempts"
    __table_args__ = (
        CheckConstraint(one_of("outcome", ("reached", "no_answer", "left_message", "wrong_number")), name="outcome"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    worker_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))
    note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)

    referral: Mapped[Referral] = relationship(back_populates="contact_attempts")
    # Joined: a referral's page names the worker of every attempt, in the same query as the attempts.
    worker: Mapped[User | None] = relationship(lazy="joined")


class DataKey(Base):
    """A referral's data key, wrapped by a key-encryption key. Deleting the row shreds the data."""

    __tablename__ = "data_keys"

    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), primary_key=True)
    kek_id: Mapped[str] = mapped_column(String(32), index=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
