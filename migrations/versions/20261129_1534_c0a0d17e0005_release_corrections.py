"""Corrections: a release may restate an earlier month as a new, numbered release.

Revision ID: c0a0d17e0005
Revises: c0a0d17e0004
Create Date: 2026-11-29 15:34:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'c0a0d17e0005'
down_revision = 'c0a0d17e0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revision', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('corrects', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reason', sa.String(length=200), nullable=True))
        batch_op.drop_constraint('uq_releases_period', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_releases_period_revision'), ['period', 'revision'])
        batch_op.create_foreign_key(batch_op.f('fk_releases_corrects_releases'), 'releases', ['corrects'],
                                    ['number'], ondelete='RESTRICT')
        batch_op.create_check_constraint(batch_op.f('ck_releases_correction_names_its_release'),
                                         '(revision = 0) = (corrects IS NULL)')
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.alter_column('revision', server_default=None)


def downgrade() -> None:
    op.execute("DELETE FROM releases WHERE revision > 0")
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_releases_correction_names_its_release'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_releases_corrects_releases'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_releases_period_revision'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_releases_period'), ['period'])
        batch_op.drop_column('reason')
        batch_op.drop_column('corrects')
        batch_op.drop_column('revision')
