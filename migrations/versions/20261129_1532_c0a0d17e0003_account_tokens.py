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


OLD_KINDS = "kind IN ('new_referral','status_changed')"
NEW_KINDS = "kind IN ('new_referral','status_changed','invitation','password_reset')"
ONE_SUBJECT = "(referral_id IS NULL) <> (account_token_id IS NULL)"


def upgrade() -> None:
    op.create_table('account_tokens',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('purpose', sa.String(length=8), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('kek_id', sa.String(length=32), nullable=True),
    sa.Column('wrapped_token', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("purpose IN ('invite','reset')", name=op.f('ck_account_tokens_purpose')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_account_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_account_tokens_token_hash'))
    )
    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('login_throttles',
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('locked_until', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('failures >= 0', name=op.f('ck_login_throttles_failures')),
    sa.PrimaryKeyConstraint('key_hash', name=op.f('pk_login_throttles'))
    )
    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_throttles_updated_at'), ['updated_at'], unique=False)

    # The outbox also carries account mails: a token instead of a referral, and no status.
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_token_id', sa.Uuid(), nullable=True))
        batch_op.alter_column('referral_id', existing_type=sa.Uuid(), nullable=True)
        batch_op.alter_column('status', existing_type=sa.String(length=16), nullable=True)
        batch_op.create_index(batch_op.f('ix_notifications_account_token_id'), ['account_token_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_notifications_account_token_id_account_tokens'), 'account_tokens',
                                    ['account_token_id'], ['id'], ondelete='CASCADE')
        batch_op.drop_constraint(op.f('ck_notifications_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_notifications_kind'), NEW_KINDS)
        batch_op.create_check_constraint(op.f('ck_notifications_one_subject'), ONE_SUBJECT)


def downgrade() -> None:
    # Account mails cannot exist in the older outbox; they are links that a resend recreates.
    op.execute("DELETE FROM notifications WHERE account_token_id IS NOT NULL")
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_notifications_one_subject'), type_='check')
        batch_op.drop_constraint(op.f('ck_notifications_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_notifications_kind'), OLD_KINDS)
        batch_op.drop_constraint(batch_op.f('fk_notifications_account_token_id_account_tokens'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_notifications_account_token_id'))
        batch_op.alter_column('status', existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column('referral_id', existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column('account_token_id')

    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_throttles_updated_at'))
    op.drop_table('login_throttles')

    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_tokens_user_id'))
    op.drop_table('account_tokens')
