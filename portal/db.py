"""Declarative base, engine and the request-scoped session.

Services receive a session and never commit; the request boundary (a view, a CLI command)
commits once the work succeeded, and anything left uncommitted is rolled back at teardown.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

from sqlalchemy import DateTime, MetaData, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def one_of(column: str, values) -> str:
    """SQL for a CHECK constraint: the column holds one of these codes."""
    return f"{column} IN (" + ",".join(f"'{v}'" for v in values) + ")"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> uuid.UUID:
    """Random, unguessable identifiers: never sequential, never derived from content."""
    return uuid.uuid4()


def make_engine(url: str, migrating: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15},
                               hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # Let SQLAlchemy, not pysqlite, begin transactions, so DDL and SAVEPOINTs are
            # transactional too (SQLAlchemy's documented pysqlite recipe).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            # Batch migrations rebuild tables that others reference: foreign keys are checked
            # after the migration instead (see migrations/env.py).
            cursor.execute(f"PRAGMA foreign_keys={'OFF' if migrating else 'ON'}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection):
            # IMMEDIATE: take the write lock at the start. A deferred transaction that has read
            # cannot upgrade to a write once another connection has committed (WAL's stale
            # snapshot), and SQLite fails it at once instead of waiting; nearly every request
            # writes (its audit events), so two users at once would see errors.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # hide_parameters: a failed statement must never print its values (personal fields) to a log.
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, hide_parameters=True)


class Database:
    """One engine and session factory per app; the session lives for one request."""

    def __init__(self, url: str):
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def dispose(self) -> None:
        self.engine.dispose()


def init_app(app, database: Database) -> None:
    from flask import g

    app.extensions["portal.db"] = database

    @app.teardown_appcontext
    def _close_session(_exc):
        session = g.pop("db_session", None)
        if session is not None:
            session.close()  # rolls back whatever was not committed


def get_session() -> Session:
    """The current request's session, opened on first use."""
    from flask import current_app, g

    if "db_session" not in g:
        g.db_session = current_app.extensions["portal.db"].sessions()
    return g.db_session


@contextmanager
def transaction(session: Session):
    """Commit the block's work, or roll all of it back on any error."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


def plan_for_these_values(session: Session) -> None:
    """Until this transaction ends, PostgreSQL plans each statement for its own parameter values.

    psycopg prepares a statement after five runs, and after five more PostgreSQL may keep one
    generic plan for any values. Where the best plan depends on them (a date window, a rare
    action), that made a worker's reads several times slower from the eleventh on: a whole-history
    dashboard table 31 -> 150 ms, an audit search for a rare action 1.5 -> 42 ms (bench/README.md).
    The planning it costs is well under a millisecond a statement."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
