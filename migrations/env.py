"""Alembic environment. Runs on SQLite (batch mode) and PostgreSQL (under an advisory lock,
so two instances starting at once do not migrate twice)."""
from __future__ import annotations

from alembic import context
from sqlalchemy import text

import portal.models  # noqa: F401  (registers every table on the metadata)
from portal.config import load
from portal.db import Base, make_engine

# A fixed key for pg_advisory_lock: "peace portal migrations".
MIGRATION_LOCK = 7_201_844_015

config = context.config
url = config.attributes.get("database_url") or load().database_url


def run_migrations_online() -> None:
    engine = make_engine(url, migrating=True)
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        sqlite = connection.dialect.name == "sqlite"
        if postgres:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=sqlite,
                compare_type=True,
                transactional_ddl=True,  # a failed migration leaves nothing half done, on SQLite too
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration broke {len(broken)} foreign key reference(s)")
        finally:
            if postgres:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                connection.commit()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
