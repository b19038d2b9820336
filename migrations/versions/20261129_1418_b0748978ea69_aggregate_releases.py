"""Published aggregate releases for police partners and the city: numbered and immutable.

Revision ID: b0748978ea69
Revises: cf1ab2657797
Create Date: 2026-11-29 14:18:32.817943
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


import portal.db

revision = 'b0748978ea69'
down_revision = 'cf1ab2657797'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('releases',
    sa.Column('number', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('released_through', sa.Date(), nullable=False),
    sa.Column('published_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('k', sa.Integer(), nullable=False),
    sa.Column('lag_days', sa.Integer(), nullable=False),
    sa.Column('policy_version', sa.String(length=64), nullable=False),
    sa.Column('tables', sa.JSON(), nullable=False),
    sa.Column('statistics', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('number', name=op.f('pk_releases')),
    sa.UniqueConstraint('period', name=op.f('uq_releases_period'))
    )


def downgrade() -> None:
    op.drop_table('releases')
