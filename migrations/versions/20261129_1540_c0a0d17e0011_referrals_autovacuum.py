"""Vacuum referrals after 1% of its rows changed (PostgreSQL), not the default 20%.

The city dashboard's response times read the recent weeks from a covering index
(ix_referrals_response_times, c0a0d17e0009) without touching the table only where the visibility
map says a page is all-visible. Those weeks are the rows teams are updating (accepted, reached,
closed); at the default thresholds a 1M-referral table waits for ~200,000 changed rows before a
vacuum marks them again, and the planner falls back to reading the table: 97 ms for the default
window just after a vacuum, 115-120 ms once a day's work has cleared the map (bench/README.md).
A vacuum of a mostly all-visible table skips those pages, so running it more often is cheap.

Revision ID: c0a0d17e0011
Revises: c0a0d17e0010
Create Date: 2026-11-29 15:40:00
"""
from __future__ import annotations

from alembic import op

revision = 'c0a0d17e0011'
down_revision = 'c0a0d17e0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE referrals SET (autovacuum_vacuum_scale_factor = 0.01, "
                   "autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE referrals RESET (autovacuum_vacuum_scale_factor, "
                   "autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor)")
