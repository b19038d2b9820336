"""An index on referrals.created_at for the city dashboard's date windows (bench/README.md).

Revision ID: c0a0d17e0006
Revises: c0a0d17e0005
Create Date: 2026-11-29 15:35:00
"""
from __future__ import annotations

from alembic import op

revision = 'c0a0d17e0006'
down_revision = 'c0a0d17e0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.create_index('ix_referrals_created_at', ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index('ix_referrals_created_at')
