"""Daily rollups of the city dashboard's counts, refreshed incrementally from dirty days.

Revision ID: c0a0d17e0008
Revises: c0a0d17e0007
Create Date: 2026-11-29 15:37:00
"""
from __future__ import annotations

from alembic import op  # noqa: F401

revision = 'c0a0d17e0008'
down_revision = 'c0a0d17e0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
