"""Per-organization OpenID Connect providers and linked identities.

Revision ID: c0a0d17e0004
Revises: c0a0d17e0003
Create Date: 2026-11-29 15:33:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import portal.db

revision = 'c0a0d17e0004'
down_revision = 'c0a0d17e0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
