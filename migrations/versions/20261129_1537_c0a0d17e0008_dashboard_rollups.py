"""Daily rollups of the city dashboard's counts, refreshed incrementally from dirty days.

The daily and monthly tables and the dirty days (portal/models/rollup.py); the triggers that mark
a referral's UTC sent day dirty when a referral is inserted or deleted, when a column the rollups
count changes (sender, receiver, zone, urgency, status, outcome, accepted_at, created_at), and when
a needed service is added or removed; then the rollups filled from the referrals already there
(daily, then summed by month). portal/dashboards/rollups.py explains the marks (one per writing
transaction and day) and how they are claimed.

SQLite drops a table's triggers with the table: a later migration that rebuilds `referrals` or
`referral_services` in batch mode must create these triggers again (tests/test_dashboard_rollups.py
checks that they exist at head).

Revision ID: c0a0d17e0008
Revises: c0a0d17e0007
Create Date: 2026-11-29 15:37:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'c0a0d17e0008'
down_revision = 'c0a0d17e0007'
branch_labels = None
depends_on = None

# The columns whose change moves a referral between rollup rows.
COUNTED = ("created_at", "sender_org_id", "receiver_org_id", "zone_id", "urgency", "status", "outcome", "accepted_at")
KEYS = ("sender_org_id", "receiver_org_id", "zone_id", "urgency")

POSTGRES_UP = [
    """CREATE FUNCTION dashboard_mark_referral() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One mark per writing transaction and day (never one another transaction may claim): see
    -- portal/dashboards/rollups.py.
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO dashboard_dirty_days (day, writer)
        VALUES ((OLD.created_at AT TIME ZONE 'UTC')::date, txid_current()) ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO dashboard_dirty_days (day, writer)
        VALUES ((NEW.created_at AT TIME ZONE 'UTC')::date, txid_current()) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$""",
    """CREATE FUNCTION dashboard_mark_referral_service() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A service removed with its referral (ON DELETE CASCADE) finds no referral: the referral's
    -- own trigger marked the day.
    INSERT INTO dashboard_dirty_days (day, writer)
    SELECT (r.created_at AT TIME ZONE 'UTC')::date, txid_current() FROM referrals r
    WHERE r.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.referral_id ELSE NEW.referral_id END
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER dashboard_referrals_insert_delete AFTER INSERT OR DELETE ON referrals
    FOR EACH ROW EXECUTE FUNCTION dashboard_mark_referral()""",
    f"""CREATE TRIGGER dashboard_referrals_update AFTER UPDATE OF {", ".join(COUNTED)} ON referrals
    FOR EACH ROW WHEN ({" OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in COUNTED)})
    EXECUTE FUNCTION dashboard_mark_referral()""",
    """CREATE TRIGGER dashboard_referral_services_insert_delete AFTER INSERT OR DELETE ON referral_services
    FOR EACH ROW EXECUTE FUNCTION dashboard_mark_referral_service()""",
]
POSTGRES_DOWN = [
    "DROP TRIGGER dashboard_referral_services_insert_delete ON referral_services",
    "DROP TRIGGER dashboard_referrals_update ON referrals",
    "DROP TRIGGER dashboard_referrals_insert_delete ON referrals",
    "DROP FUNCTION dashboard_mark_referral_service()",
    "DROP FUNCTION dashboard_mark_referral()",
]

# created_at is stored as naive UTC text ('YYYY-MM-DD HH:MM:SS...'): date() is its UTC day.
_SQLITE_MARK = "INSERT INTO dashboard_dirty_days (day, writer) VALUES (date({row}.created_at), 0) ON CONFLICT DO NOTHING;"
_SQLITE_MARK_SERVICE = ("INSERT INTO dashboard_dirty_days (day, writer) SELECT date(created_at), 0 FROM referrals "
                        "WHERE id = {row}.referral_id ON CONFLICT DO NOTHING;")
SQLITE_UP = [
    f"""CREATE TRIGGER dashboard_referrals_insert AFTER INSERT ON referrals FOR EACH ROW
    BEGIN {_SQLITE_MARK.format(row="NEW")} END""",
    f"""CREATE TRIGGER dashboard_referrals_delete AFTER DELETE ON referrals FOR EACH ROW
    BEGIN {_SQLITE_MARK.format(row="OLD")} END""",
    f"""CREATE TRIGGER dashboard_referrals_update AFTER UPDATE OF {", ".join(COUNTED)} ON referrals FOR EACH ROW
    WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in COUNTED)}
    BEGIN {_SQLITE_MARK.format(row="OLD")} {_SQLITE_MARK.format(row="NEW")} END""",
    f"""CREATE TRIGGER dashboard_referral_services_insert AFTER INSERT ON referral_services FOR EACH ROW
    BEGIN {_SQLITE_MARK_SERVICE.format(row="NEW")} END""",
    f"""CREATE TRIGGER dashboard_referral_services_delete AFTER DELETE ON referral_services FOR EACH ROW
    BEGIN {_SQLITE_MARK_SERVICE.format(row="OLD")} END""",
]
SQLITE_DOWN = [f"DROP TRIGGER {name}" for name in (
    "dashboard_referral_services_delete", "dashboard_referral_services_insert", "dashboard_referrals_update",
    "dashboard_referrals_delete", "dashboard_referrals_insert")]


def _backfill(dialect: str) -> None:
    day = "(r.created_at AT TIME ZONE 'UTC')::date" if dialect == "postgresql" else "date(r.created_at)"
    keys = ", ".join(f"r.{k}" for k in KEYS)
    op.execute(f"""INSERT INTO dashboard_daily_counts
        (day, {", ".join(KEYS)}, status, outcome, referrals, accepted)
        SELECT {day}, {keys}, r.status, coalesce(r.outcome, ''), count(*), count(r.accepted_at) FROM referrals r
        GROUP BY {day}, {keys}, r.status, coalesce(r.outcome, '')""")
    op.execute(f"""INSERT INTO dashboard_daily_services (day, {", ".join(KEYS)}, service, referrals)
        SELECT {day}, {keys}, s.service, count(*) FROM referrals r JOIN referral_services s ON s.referral_id = r.id
        GROUP BY {day}, {keys}, s.service""")
    month = "date_trunc('month', day::timestamp)::date" if dialect == "postgresql" else "strftime('%Y-%m-01', day)"
    op.execute(f"""INSERT INTO dashboard_monthly_counts (month, {keys.replace("r.", "")}, status, outcome, referrals,
        accepted) SELECT {month}, {keys.replace("r.", "")}, status, outcome, sum(referrals), sum(accepted)
        FROM dashboard_daily_counts GROUP BY {month}, {keys.replace("r.", "")}, status, outcome""")
    op.execute(f"""INSERT INTO dashboard_monthly_services (month, {keys.replace("r.", "")}, service, referrals)
        SELECT {month}, {keys.replace("r.", "")}, service, sum(referrals)
        FROM dashboard_daily_services GROUP BY {month}, {keys.replace("r.", "")}, service""")


def _keys(day: str = 'day') -> list[sa.Column]:
    return [sa.Column(day, sa.Date(), nullable=False),
            sa.Column('sender_org_id', sa.Uuid(), nullable=False),
            sa.Column('receiver_org_id', sa.Uuid(), nullable=False),
            sa.Column('zone_id', sa.Uuid(), nullable=False),
            sa.Column('urgency', sa.String(length=16), nullable=False)]


def upgrade() -> None:
    op.create_table('dashboard_daily_counts',
                    *_keys(),
                    sa.Column('status', sa.String(length=16), nullable=False),
                    sa.Column('outcome', sa.String(length=40), nullable=False),
                    sa.Column('referrals', sa.Integer(), nullable=False),
                    sa.Column('accepted', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('day', 'sender_org_id', 'receiver_org_id', 'zone_id', 'urgency', 'status',
                                            'outcome', name=op.f('pk_dashboard_daily_counts')))
    op.create_table('dashboard_daily_services',
                    *_keys(),
                    sa.Column('service', sa.String(length=40), nullable=False),
                    sa.Column('referrals', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('day', 'sender_org_id', 'receiver_org_id', 'zone_id', 'urgency', 'service',
                                            name=op.f('pk_dashboard_daily_services')))
    op.create_table('dashboard_monthly_counts',
                    *_keys('month'),
                    sa.Column('status', sa.String(length=16), nullable=False),
                    sa.Column('outcome', sa.String(length=40), nullable=False),
                    sa.Column('referrals', sa.Integer(), nullable=False),
                    sa.Column('accepted', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('month', 'sender_org_id', 'receiver_org_id', 'zone_id', 'urgency',
                                            'status', 'outcome', name=op.f('pk_dashboard_monthly_counts')))
    op.create_table('dashboard_monthly_services',
                    *_keys('month'),
                    sa.Column('service', sa.String(length=40), nullable=False),
                    sa.Column('referrals', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('month', 'sender_org_id', 'receiver_org_id', 'zone_id', 'urgency',
                                            'service', name=op.f('pk_dashboard_monthly_services')))
    op.create_table('dashboard_dirty_days',
                    sa.Column('day', sa.Date(), nullable=False),
                    sa.Column('writer', sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.PrimaryKeyConstraint('day', 'writer', name=op.f('pk_dashboard_dirty_days')))
    dialect = op.get_bind().dialect.name
    for statement in POSTGRES_UP if dialect == "postgresql" else SQLITE_UP:
        op.execute(statement)
    _backfill(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in POSTGRES_DOWN if dialect == "postgresql" else SQLITE_DOWN:
        op.execute(statement)
    op.drop_table('dashboard_dirty_days')
    op.drop_table('dashboard_monthly_services')
    op.drop_table('dashboard_monthly_counts')
    op.drop_table('dashboard_daily_services')
    op.drop_table('dashboard_daily_counts')
