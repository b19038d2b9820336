"""Partial indexes measured by bench/indexes.py at 1M referrals: the inbox's open referrals in page
order (50 -> 8 ms), unrevoked consents by expiry and closed referrals due for purge (retention's
two claims, 94 and 168 -> under 1 ms).

Revision ID: c0a0d17e0007
Revises: c0a0d17e0006
Create Date: 2026-11-29 15:36:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'c0a0d17e0007'
down_revision = 'c0a0d17e0006'
branch_labels = None
depends_on = None

OPEN = "status IN ('sent', 'accepted', 'in_progress', 'on_hold')"
PURGE_DUE = ("status IN ('declined', 'completed', 'cancelled') "
             "AND (personal_enc IS NOT NULL OR note_enc IS NOT NULL OR personal_purged_at IS NULL)")
UNREVOKED = "revoked_at IS NULL"


def _where(predicate: str) -> dict:
    return {"postgresql_where": sa.text(predicate), "sqlite_where": sa.text(predicate)}


def upgrade() -> None:
    op.create_index('ix_referrals_inbox_open', 'referrals', ['receiver_org_id', 'urgency', 'created_at'],
                    **_where(OPEN))
    op.create_index('ix_referrals_purge_due', 'referrals', ['closed_at'], **_where(PURGE_DUE))
    op.create_index('ix_consents_unrevoked_expiry', 'consents', ['expires_at'], **_where(UNREVOKED))


def downgrade() -> None:
    op.drop_index('ix_consents_unrevoked_expiry', table_name='consents')
    op.drop_index('ix_referrals_purge_due', table_name='referrals')
    op.drop_index('ix_referrals_inbox_open', table_name='referrals')
