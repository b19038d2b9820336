"""Referrals, consents, status events, contact attempts, data keys; organizations take intake status.

Revision ID: 8085ad65e10e
Revises: 9c353e1dc24e
Create Date: 2026-11-29 13:34:52.474710
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


import portal.db

revision = '8085ad65e10e'
down_revision = '9c353e1dc24e'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('consents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('obtained_by_id', sa.Uuid(), nullable=False),
    sa.Column('obtained_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('purpose', sa.String(length=40), nullable=False),
    sa.Column('data_categories', sa.String(length=80), nullable=False),
    sa.Column('expires_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_by_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("method IN ('verbal','written','electronic')", name=op.f('ck_consents_method')),
    sa.CheckConstraint('expires_at > obtained_at', name=op.f('ck_consents_expires_after_obtained')),
    sa.ForeignKeyConstraint(['obtained_by_id'], ['users.id'], name=op.f('fk_consents_obtained_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['revoked_by_id'], ['users.id'], name=op.f('fk_consents_revoked_by_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consents'))
    )
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consents_expires_at'), ['expires_at'], unique=False)

    op.create_table('consent_recipients',
    sa.Column('consent_id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['consent_id'], ['consents.id'], name=op.f('fk_consent_recipients_consent_id_consents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_consent_recipients_organization_id_organizations'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('consent_id', 'organization_id', name=op.f('pk_consent_recipients'))
    )
    op.create_table('referrals',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('sender_org_id', sa.Uuid(), nullable=False),
    sa.Column('receiver_org_id', sa.Uuid(), nullable=False),
    sa.Column('created_by_id', sa.Uuid(), nullable=False),
    sa.Column('assigned_to_id', sa.Uuid(), nullable=True),
    sa.Column('consent_id', sa.Uuid(), nullable=False),
    sa.Column('parent_id', sa.Uuid(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.String(length=40), nullable=True),
    sa.Column('outcome', sa.String(length=40), nullable=True),
    sa.Column('urgency', sa.String(length=16), nullable=False),
    sa.Column('zone_id', sa.Uuid(), nullable=False),
    sa.Column('age_band', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('retaliation_risk', sa.Boolean(), nullable=False),
    sa.Column('personal_enc', sa.LargeBinary(), nullable=True),
    sa.Column('note_enc', sa.LargeBinary(), nullable=True),
    sa.Column('personal_purged_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('first_contact_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("age_band IN ('under_18','18_24','25_34','35_plus')", name=op.f('ck_referrals_age_band')),
    sa.CheckConstraint("reason IN ('gunshot_wound','stab_wound','assault','other_violent_injury')", name=op.f('ck_referrals_reason')),
    sa.CheckConstraint("status IN ('sent','accepted','declined','in_progress','on_hold','completed','cancelled','revoked')", name=op.f('ck_referrals_status')),
    sa.CheckConstraint("urgency IN ('routine','urgent')", name=op.f('ck_referrals_urgency')),
    sa.CheckConstraint('sender_org_id <> receiver_org_id', name=op.f('ck_referrals_not_to_self')),
    sa.ForeignKeyConstraint(['assigned_to_id'], ['users.id'], name=op.f('fk_referrals_assigned_to_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['consent_id'], ['consents.id'], name=op.f('fk_referrals_consent_id_consents'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_referrals_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['parent_id'], ['referrals.id'], name=op.f('fk_referrals_parent_id_referrals'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['receiver_org_id'], ['organizations.id'], name=op.f('fk_referrals_receiver_org_id_organizations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['sender_org_id'], ['organizations.id'], name=op.f('fk_referrals_sender_org_id_organizations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['zone_id'], ['zones.id'], name=op.f('fk_referrals_zone_id_zones'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referrals'))
    )
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_referrals_consent_id'), ['consent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_referrals_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index('ix_referrals_receiver_status', ['receiver_org_id', 'status'], unique=False)
        batch_op.create_index('ix_referrals_sender_created', ['sender_org_id', 'created_at'], unique=False)

    op.create_table('contact_attempts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('referral_id', sa.Uuid(), nullable=False),
    sa.Column('worker_id', sa.Uuid(), nullable=True),
    sa.Column('at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('note_enc', sa.LargeBinary(), nullable=True),
    sa.CheckConstraint("outcome IN ('reached','no_answer','left_message','wrong_number')", name=op.f('ck_contact_attempts_outcome')),
    sa.ForeignKeyConstraint(['referral_id'], ['referrals.id'], name=op.f('fk_contact_attempts_referral_id_referrals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['worker_id'], ['users.id'], name=op.f('fk_contact_attempts_worker_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_attempts'))
    )
    with op.batch_alter_table('contact_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_attempts_referral_id'), ['referral_id'], unique=False)

    op.create_table('data_keys',
    sa.Column('referral_id', sa.Uuid(), nullable=False),
    sa.Column('kek_id', sa.String(length=32), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['referral_id'], ['referrals.id'], name=op.f('fk_data_keys_referral_id_referrals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('referral_id', name=op.f('pk_data_keys'))
    )
    with op.batch_alter_table('data_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_data_keys_kek_id'), ['kek_id'], unique=False)

    op.create_table('referral_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('referral_id', sa.Uuid(), nullable=False),
    sa.Column('at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.Column('actor_org_id', sa.Uuid(), nullable=True),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('reason_code', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_referral_events_actor_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['actor_org_id'], ['organizations.id'], name=op.f('fk_referral_events_actor_org_id_organizations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['referral_id'], ['referrals.id'], name=op.f('fk_referral_events_referral_id_referrals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_events'))
    )
    with op.batch_alter_table('referral_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_referral_events_referral_id'), ['referral_id'], unique=False)

    op.create_table('referral_services',
    sa.Column('referral_id', sa.Uuid(), nullable=False),
    sa.Column('service', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['referral_id'], ['referrals.id'], name=op.f('fk_referral_services_referral_id_referrals'), ondelete='CASCADE'),
    sa.CheckConstraint("service IN ('intensive_mentoring','care_management','conflict_mediation','behavioral_health','life_coaching','education_housing_employment','social_networks')", name=op.f('ck_referral_services_service')),
    sa.PrimaryKeyConstraint('referral_id', 'service', name=op.f('pk_referral_services'))
    )
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('intake', sa.String(length=16), server_default='open', nullable=False))
        batch_op.create_check_constraint(op.f('ck_organizations_intake'), "intake IN ('open','waitlist','at_capacity')")


def downgrade() -> None:
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_organizations_intake'), type_='check')
        batch_op.drop_column('intake')

    op.drop_table('referral_services')
    with op.batch_alter_table('referral_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_referral_events_referral_id'))

    op.drop_table('referral_events')
    with op.batch_alter_table('data_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_data_keys_kek_id'))

    op.drop_table('data_keys')
    with op.batch_alter_table('contact_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_attempts_referral_id'))

    op.drop_table('contact_attempts')
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index('ix_referrals_sender_created')
        batch_op.drop_index('ix_referrals_receiver_status')
        batch_op.drop_index(batch_op.f('ix_referrals_parent_id'))
        batch_op.drop_index(batch_op.f('ix_referrals_consent_id'))

    op.drop_table('referrals')
    op.drop_table('consent_recipients')
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consents_expires_at'))

    op.drop_table('consents')
