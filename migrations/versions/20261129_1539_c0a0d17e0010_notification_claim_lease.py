"""The outbox's claim lease: a run that is still sending a mail (slow mail server) holds the row
until `claimed_until`, so a run that cron starts meanwhile no longer sends it a second time.

The pending index stays (sent_at, created_at): it gives the unsent rows in created_at order; the
lease, like attempts, is a filter on those rows, and only a batch in flight holds one.

Revision ID: c0a0d17e0010
Revises: c0a0d17e0009
Create Date: 2026-11-29 15:39:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import portal.db

revision = 'c0a0d17e0010'
down_revision = 'c0a0d17e0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: SQLite adds it in place (batch "auto" rebuilds nothing).
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_until', portal.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # SQLite rebuilds notifications here; the table has no triggers to lose.
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('claimed_until')
