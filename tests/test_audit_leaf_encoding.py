"""The leaf encoding (written out field by field, for speed) is exactly canonical JSON of the
event's fields, whatever they hold, and `portal audit verify` streams the same hashes."""
import uuid
from datetime import datetime, timezone

from sqlalchemy import select

from portal.audit import merkle
from portal.audit.log import Draft, _timestamp, append, canonical_json, iter_leaf_hashes, leaf_bytes, leaf_hash
from portal.db import get_session
from portal.models import AuditEvent

AWKWARD = ['quote " and backslash \\ and slash /', "tab\tnewline\ncarriage\rbell\x07", "naïve — ünïcode ☃ 𝄞",
           "", "{}", "\u2028\u2029"]


def canonical(event: AuditEvent) -> bytes:
    """The specification of a leaf: canonical JSON (sorted keys, no spaces, ASCII) of these fields."""
    return canonical_json({
        "v": 1, "seq": event.seq, "at": _timestamp(event.at),
        "actor": str(event.actor_id) if event.actor_id else None,
        "org": str(event.organization_id) if event.organization_id else None,
        "action": event.action, "rtype": event.resource_type, "rid": event.resource_id,
        "decision": event.decision, "policies": event.policy_ids, "request": event.request_id,
        "detail": event.detail,
    }).encode("ascii")


def test_streamed_leaf_hashes_equal_the_canonical_encoding_of_every_stored_event(app):
    """Every field kind: present and absent ids, awkward text in each string field, a timestamp
    with no microseconds and one with; the streamed hashes must equal leaf_hash of the rows."""
    with app.app_context():
        db = get_session()
        for i, value in enumerate(AWKWARD):
            at = datetime(2026, 3, 1, 12, 0, i, 0 if i % 2 else 123456, tzinfo=timezone.utc)
            append(db, [
                Draft(action=f"referral.{value}"[:64], resource_type=value[:32] or "Portal", resource_id=value[:64],
                      decision="allow", actor_id=uuid.uuid4(), organization_id=uuid.uuid4(),
                      policy_ids=(value, "b.policy"), request_id=value[:32] or None, detail={"note": value}),
                Draft(action="home.view", resource_type="Portal", resource_id=None, decision="deny"),
            ], at)
        db.commit()
        stored = list(db.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        assert len(stored) == 2 * len(AWKWARD)
        expected = [leaf_hash(event) for event in stored]
        assert list(iter_leaf_hashes(db)) == expected
        assert list(iter_leaf_hashes(db, size=3)) == expected[:3]
        # The bytes themselves, not only their hashes: exactly the specification, for every event.
        assert [leaf_bytes(event) for event in stored] == [canonical(event) for event in stored]
        assert expected == [merkle.leaf_hash(canonical(event)) for event in stored]


def test_leaf_timestamps_keep_their_text():
    """UTC, microseconds always written (six digits), a Z; other offsets converted first; the text
    older checkpoints were signed over, so it may never change."""
    from datetime import timedelta

    from portal.audit.log import _timestamp
    assert _timestamp(datetime(2026, 3, 1, 12, 0, 5, tzinfo=timezone.utc)) == "2026-03-01T12:00:05.000000Z"
    assert _timestamp(datetime(2026, 3, 1, 12, 0, 5, 42, tzinfo=timezone.utc)) == "2026-03-01T12:00:05.000042Z"
    east = timezone(timedelta(hours=2))
    assert _timestamp(datetime(2026, 1, 1, 1, 30, tzinfo=east)) == "2025-12-31T23:30:00.000000Z"
    assert _timestamp(datetime(2026, 1, 1, tzinfo=east)) == \
        datetime(2026, 1, 1, tzinfo=east).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_append_stores_every_draft_as_given_in_order(app):
    """PostgreSQL takes a request's events as one statement of arrays, SQLite as a multi-row insert:
    on both, each row holds its draft's fields exactly, absent ids and awkward text included, and
    the seq numbers follow the drafts' order."""
    drafts = [Draft(action=f"a{i}", resource_type=value[:32] or "Portal", resource_id=value[:64] or None,
                    decision=("allow", "deny")[i % 2], actor_id=uuid.uuid4() if i % 3 else None,
                    organization_id=None if i % 2 else uuid.uuid4(), policy_ids=("z.policy", value[:20]),
                    request_id=value[:32] or None, detail={"note": value, "n": i})
              for i, value in enumerate(AWKWARD * 3)]
    at = datetime(2026, 3, 1, 12, 0, 1, 250000, tzinfo=timezone.utc)
    with app.app_context():
        db = get_session()
        before = db.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
        seqs = append(db, drafts, at)
        db.commit()
        stored = list(db.scalars(select(AuditEvent).where(AuditEvent.seq >= seqs.start).order_by(AuditEvent.seq)))
    assert seqs.start == (-1 if before is None else before) + 1 and len(seqs) == len(drafts)
    assert [e.seq for e in stored] == list(seqs)
    assert [(e.action, e.resource_type, e.resource_id, e.decision, e.actor_id, e.organization_id, e.policy_ids,
             e.request_id, e.detail, e.at) for e in stored] == \
        [(d.action, d.resource_type, d.resource_id, d.decision, d.actor_id, d.organization_id,
          ",".join(sorted(d.policy_ids)), d.request_id, canonical_json(d.detail), at) for d in drafts]
