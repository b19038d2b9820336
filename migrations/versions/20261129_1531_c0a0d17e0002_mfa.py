"""TOTP second factor and hashed recovery codes.

Revision ID: c0a0d17e0002
Revises: c0a0d17e0001
Create Date: 2026-11-29 15:31:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import portal.db

revision = 'c0a0d17e0002'
down_revision = 'c0a0d17e0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
