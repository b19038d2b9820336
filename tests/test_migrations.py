"""Migrations: no drift from the models, and a full downgrade and upgrade on each backend."""
import uuid

import pytest
from sqlalchemy import create_engine, inspect, text

from portal import migrate
from tests.conftest import _drop_postgres_database, _postgres_database


def test_models_and_migrations_agree(database_url):
    """`alembic check`: autogenerate finds nothing the migrations have not written."""
    migrate.check(database_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch.sqlite3'}"
        return
    base = request.getfixturevalue("postgres_base_url")
    name = f"portal_scratch_{uuid.uuid4().hex[:8]}"
    yield _postgres_database(base, name)
    _drop_postgres_database(base, name)


def test_downgrade_to_base_and_upgrade_again(scratch_url):
    """Every migration has a working downgrade, on SQLite (batch mode) and PostgreSQL."""
    migrate.upgrade(scratch_url)
    migrate.downgrade(scratch_url, "base")
    engine = create_engine(scratch_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(scratch_url)
    assert {"users", "organizations", "zones", "user_sessions"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_upgrade_keeps_existing_rows(scratch_url):
    """Upgrading a database that holds accounts keeps them (SQLite rebuilds tables in batch mode)."""
    migrate.upgrade(scratch_url, "9c353e1dc24e")
    engine = create_engine(scratch_url)
    org_id, user_id = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO organizations (id, name, kind, active, created_at) "
                          "VALUES (:id, 'Old Org', 'cvi_team', true, CURRENT_TIMESTAMP)"),
                     {"id": org_id.hex if conn.dialect.name == "sqlite" else org_id})
        conn.execute(text("INSERT INTO users (id, email, display_name, organization_id, role, is_portal_admin, "
                          "active, failed_login_count, created_at) VALUES (:id, 'old@org.test', 'Old', :org, "
                          "'staff', false, true, 0, CURRENT_TIMESTAMP)"),
                     {"id": user_id.hex if conn.dialect.name == "sqlite" else user_id,
                      "org": org_id.hex if conn.dialect.name == "sqlite" else org_id})
    migrate.upgrade(scratch_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT intake FROM organizations")).scalar() == "open"
        assert conn.execute(text("SELECT email FROM users")).scalar() == "old@org.test"
    engine.dispose()
