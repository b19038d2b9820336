"""PostgreSQL privileges for the application's role: everything it needs, and on the audit log
nothing but INSERT and SELECT.

Run by the owner after `portal db upgrade` (`portal db grant-app-role ROLE`). The web workers then
connect as ROLE: even with the application's credentials in hand, nobody can UPDATE or DELETE an
audit event (and the append-only trigger refuses it for the owner too).
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from portal.db import Base

# table → privileges; every other table gets full DML (the application deletes sessions, purges).
RESTRICTED = {
    "audit_events": "SELECT, INSERT",
    "audit_checkpoints": "SELECT, INSERT",
    "audit_head": "SELECT, UPDATE",  # the leaf counter; a forged bump only makes a gap verify reports
    "releases": "SELECT, INSERT",    # published numbers are never recomputed in place
}
FULL = "SELECT, INSERT, UPDATE, DELETE"


def _quote(conn: Connection, identifier: str) -> str:
    return conn.dialect.identifier_preparer.quote(identifier)


def grant_application_role(conn: Connection, role: str) -> list[str]:
    """Grant `role` its privileges on every table of the models; returns the statements run."""
    if conn.dialect.name != "postgresql":
        raise ValueError("roles and grants exist on PostgreSQL only")
    who = _quote(conn, role)
    statements = [f"GRANT USAGE ON SCHEMA public TO {who}"]
    for table in Base.metadata.sorted_tables:
        name = _quote(conn, table.name)
        statements.append(f"REVOKE ALL ON {name} FROM {who}")
        statements.append(f"GRANT {RESTRICTED.get(table.name, FULL)} ON {name} TO {who}")
    statements.append(f"GRANT SELECT ON alembic_version TO {who}")
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {who}")
    for statement in statements:
        conn.execute(text(statement))
    return statements
