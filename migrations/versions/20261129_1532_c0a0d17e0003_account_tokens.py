"""Invitation and password-reset tokens (hashed, single-use), login lockout state.

Revision ID: c0a0d17e0003
Revises: c0a0d17e0002
Create Date: 2026-11-29 15:32:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import portal.db

revision = 'c0a0d17e0003'
down_revision = 'c0a0d17e0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
