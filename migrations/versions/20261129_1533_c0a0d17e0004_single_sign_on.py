"""Per-organization OpenID Connect providers and linked identities.

Revision ID: c0a0d17e0004
Revises: c0a0d17e0003
Create Date: 2026-11-29 15:33:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import portal.db

revision = 'c0a0d17e0004'
down_revision = 'c0a0d17e0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('identity_providers',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('issuer', sa.String(length=255), nullable=False),
    sa.Column('client_id', sa.String(length=255), nullable=False),
    sa.Column('kek_id', sa.String(length=32), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=False),
    sa.Column('client_secret_enc', sa.LargeBinary(), nullable=False),
    sa.Column('allowed_domains', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(client_id) BETWEEN 1 AND 255', name=op.f('ck_identity_providers_client_id_length')),
    sa.CheckConstraint('length(issuer) BETWEEN 8 AND 255', name=op.f('ck_identity_providers_issuer_length')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_identity_providers_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_providers')),
    sa.UniqueConstraint('organization_id', name=op.f('uq_identity_providers_organization_id'))
    )
    with op.batch_alter_table('identity_providers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identity_providers_kek_id'), ['kek_id'], unique=False)

    op.create_table('linked_identities',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('issuer', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('linked_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_linked_identities_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_linked_identities')),
    sa.UniqueConstraint('issuer', 'subject', name=op.f('uq_linked_identities_issuer')),
    sa.UniqueConstraint('user_id', 'issuer', name=op.f('uq_linked_identities_user_id'))
    )
    with op.batch_alter_table('linked_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_linked_identities_user_id'), ['user_id'], unique=False)

    op.create_table('sso_pending_logins',
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('browser_hash', sa.String(length=64), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('nonce', sa.String(length=128), nullable=False),
    sa.Column('code_verifier', sa.String(length=128), nullable=False),
    sa.Column('next_url', sa.String(length=512), nullable=True),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['identity_providers.id'], name=op.f('fk_sso_pending_logins_provider_id_identity_providers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('state_hash', name=op.f('pk_sso_pending_logins'))
    )
    with op.batch_alter_table('sso_pending_logins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sso_pending_logins_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sso_pending_logins_provider_id'), ['provider_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sso_pending_logins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sso_pending_logins_provider_id'))
        batch_op.drop_index(batch_op.f('ix_sso_pending_logins_created_at'))
    op.drop_table('sso_pending_logins')

    with op.batch_alter_table('linked_identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_linked_identities_user_id'))
    op.drop_table('linked_identities')

    with op.batch_alter_table('identity_providers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identity_providers_kek_id'))
    op.drop_table('identity_providers')
