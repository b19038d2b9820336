"""Organizations (by their function in the exchange) and the city-defined zones they serve."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Column, ForeignKey, String, Table, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, new_id, one_of, utcnow

ORG_KINDS = ("hospital_program", "cvi_team", "service_provider", "city_office", "police_partner")

organization_zones = Table(
    "organization_zones",
    Base.metadata,
    Column("organization_id", Uuid, ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True),
    Column("zone_id", Uuid, ForeignKey("zones.id", ondelete="RESTRICT"), primary_key=True),
)


class Zone(Base):
    """A coarse, city-defined area (never an address): the finest geography the portal knows."""

    __tablename__ = "zones"
    __table_args__ = (CheckConstraint("length(code) BETWEEN 1 AND 16", name="code_length"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    label: Mapped[str] = mapped_column(String(80))


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (
        CheckConstraint(one_of("kind", ORG_KINDS), name="kind"),
        CheckConstraint("length(name) BETWEEN 1 AND 120", name="name_length"),
        CheckConstraint(one_of("intake", ("open", "waitlist", "at_capacity")), name="intake"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Whether a receiving team is taking referrals; shown to senders choosing a team.
    intake: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    zones: Mapped[list[Zone]] = relationship(secondary=organization_zones, order_by=Zone.code)
    users = relationship("User", back_populates="organization", order_by="User.email")

    def __repr__(self) -> str:
        return f"<Organization {self.id} {self.kind}>"
