"""The audit log in the database: append, canonical leaf encoding, tree state and proofs.

No Flask here: the web layer (portal/audit/trail.py), the CLI and the tests call these with a
SQLAlchemy session. `append` runs inside the caller's transaction, so an event is committed
exactly when the action it records is, and rolled back with it.
"""
from __future__ import annotations

import json
import uuid
from json.encoder import encode_basestring_ascii as _json_string
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from portal.audit import merkle
from portal.db import UTCDateTime
from portal.models import AuditEvent, AuditHead

LEAF_VERSION = 1
_BATCH = 5000


class AuditError(Exception):
    """The log in the database is not a well-formed log (a gap, a duplicate, a broken head)."""


@dataclass
class Draft:
    """An event not yet given its place in the log. `detail` holds ids, codes and parameters only."""

    action: str
    resource_type: str
    resource_id: str | None
    decision: str
    actor_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    policy_ids: tuple[str, ...] = ()
    request_id: str | None = None
    detail: dict = field(default_factory=dict)


def canonical_json(value) -> str:
    """One text per value: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _timestamp(at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    if at.year < 1000:  # strftime does not pad such years everywhere; keep its text for them
        return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"  # the same text, faster


# The columns leaf_bytes reads, in the order _leaf_bytes_of_row takes them.
_LEAF_COLUMNS = (AuditEvent.seq, AuditEvent.at, AuditEvent.actor_id, AuditEvent.organization_id, AuditEvent.action,
                 AuditEvent.resource_type, AuditEvent.resource_id, AuditEvent.decision, AuditEvent.policy_ids,
                 AuditEvent.request_id, AuditEvent.detail)


def _json(value) -> str:
    """One value as canonical_json writes it: a string ASCII-escaped, None as null."""
    return "null" if value is None else _json_string(value)


def _leaf_bytes_of_row(seq, at, actor, org, action, rtype, rid, decision, policies, request, detail,
                       ids: dict) -> bytes:
    """The canonical encoding of one event: canonical_json of {"v", "seq", "at", "actor", "org",
    "action", "rtype", "rid", "decision", "policies", "request", "detail"}, written out directly
    with the keys in sorted order (verifying a million events builds a million; the spec is
    restated in tests/test_audit_leaf_encoding.py). `ids` remembers the text of the few actor and
    organization ids that recur across the log."""
    actor_text = ids.get(actor) or ids.setdefault(actor, _json(str(actor) if actor else None))
    org_text = ids.get(org) or ids.setdefault(org, _json(str(org) if org else None))
    return (f'{{"action":{_json_string(action)},"actor":{actor_text},"at":{_json_string(_timestamp(at))},'
            f'"decision":{_json_string(decision)},"detail":{_json_string(detail)},"org":{org_text},'
            f'"policies":{_json_string(policies)},"request":{_json(request)},"rid":{_json(rid)},'
            f'"rtype":{_json_string(rtype)},"seq":{int(seq)!r},"v":{LEAF_VERSION!r}}}').encode("ascii")


def leaf_bytes(event: AuditEvent) -> bytes:
    """What one stored event's leaf hash covers."""
    return _leaf_bytes_of_row(*(getattr(event, column.key) for column in _LEAF_COLUMNS), ids={})


def leaf_hash(event: AuditEvent) -> bytes:
    return merkle.leaf_hash(leaf_bytes(event))


def append(db: Session, drafts: list[Draft], at: datetime) -> range:
    """Give `drafts` the next leaf indexes and insert them, in the caller's transaction; returns
    their seq numbers.

    The UPDATE takes the head row's lock until the transaction ends, so appenders queue here;
    callers append last, just before commit, to keep that queue short.
    """
    if not drafts:
        return range(0)
    size = db.execute(_GROW_HEAD, {"count": len(drafts)}).scalar_one_or_none()
    if size is None:
        raise AuditError("the audit head row is missing")
    first = size - len(drafts)
    rows = [(d.actor_id, d.organization_id, d.action, d.resource_type, d.resource_id, d.decision,
             ",".join(sorted(d.policy_ids)), d.request_id, canonical_json(d.detail)) for d in drafts]
    if db.get_bind().dialect.name == "postgresql":
        db.execute(_INSERT_UNNESTED, {"first": first, "at": at,
                                      **{name: list(column) for name, column in zip(_UNNESTED, zip(*rows))}})
    else:  # no objects for the session to track: an inbox page appends 51 events
        db.execute(insert(AuditEvent.__table__), [
            {"seq": first + i, "at": at, **dict(zip(_UNNESTED.values(), row))} for i, row in enumerate(rows)])
    return range(first, size)


# Built once: every request that records anything runs it (0.6 ms of CPU less a referral created).
_GROW_HEAD = (update(AuditHead).where(AuditHead.id == 1).values(size=AuditHead.size + bindparam("count"))
              .returning(AuditHead.size))
# The columns of a draft, in the order of the statement's arrays below; seq and at are the same for all.
_UNNESTED = {"actor": "actor_id", "org": "organization_id", "action": "action", "rtype": "resource_type",
             "rid": "resource_id", "decision": "decision", "policies": "policy_ids", "request": "request_id",
             "detail": "detail"}
# One statement for a whole request's events, its parameters one array a column: PostgreSQL parses
# and plans it once, where a multi-row INSERT grows with the page (51 events: 3.7 -> 2.8 ms a page).
_INSERT_UNNESTED = text(
    "INSERT INTO audit_events (seq, at, actor_id, organization_id, action, resource_type, resource_id, decision, "
    "policy_ids, request_id, detail) "
    "SELECT :first + n - 1, :at, actor, org, action, rtype, rid, decision, policies, request, detail "
    "FROM unnest(CAST(:actor AS uuid[]), CAST(:org AS uuid[]), CAST(:action AS text[]), CAST(:rtype AS text[]), "
    "CAST(:rid AS text[]), CAST(:decision AS text[]), CAST(:policies AS text[]), CAST(:request AS text[]), "
    "CAST(:detail AS text[])) WITH ORDINALITY AS draft(actor, org, action, rtype, rid, decision, policies, request, "
    "detail, n)").bindparams(bindparam("at", type_=UTCDateTime()))


def head_size(db: Session) -> int:
    size = db.scalar(select(AuditHead.size).where(AuditHead.id == 1))
    if size is None:
        raise AuditError("the audit head row is missing")
    return size


def iter_leaf_hashes(db: Session, size: int | None = None) -> Iterator[bytes]:
    """Leaf hashes in order, recomputed from the stored fields; a gap or extra row is an error."""
    expected = 0
    query = select(*_LEAF_COLUMNS).order_by(AuditEvent.seq)  # columns, not objects: no identity map
    if size is not None:
        query = query.where(AuditEvent.seq < size)
    result = db.connection().execute(query.execution_options(yield_per=_BATCH))
    hash_leaf, ids = merkle.leaf_hash, {}
    try:
        for row in result:
            seq = row[0]
            if seq != expected:
                raise AuditError(f"the log has no event {expected}" if seq > expected
                                 else f"event {seq} appears twice")
            yield hash_leaf(_leaf_bytes_of_row(*row, ids))
            expected += 1
    finally:
        result.close()  # a server-side cursor on PostgreSQL: close it even when stopping early
    if size is not None and expected != size:
        raise AuditError(f"the log ends at {expected} events, before {size}")


def leaf_hashes(db: Session, size: int | None = None) -> list[bytes]:
    return list(iter_leaf_hashes(db, size))


def current_tree(db: Session) -> merkle.CompactTree:
    """The whole log as a compact tree; the head row must agree with the rows."""
    size = head_size(db)
    tree = merkle.CompactTree.from_leaves(iter_leaf_hashes(db))
    if tree.size != size:
        raise AuditError(f"the head says {size} events, the table holds {tree.size}")
    return tree
