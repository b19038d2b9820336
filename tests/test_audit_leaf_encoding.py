"""The streaming leaf encoding used by `portal audit verify` (columns, no ORM objects) writes the
very bytes that leaf_bytes writes for the stored event, whatever the fields hold."""
import uuid
from datetime import datetime, timezone

from sqlalchemy import select

from portal.audit import merkle
from portal.audit.log import Draft, append, iter_leaf_hashes, leaf_bytes, leaf_hash
from portal.db import get_session
from portal.models import AuditEvent

AWKWARD = ['quote " and backslash \\ and slash /', "tab\tnewline\ncarriage\rbell\x07", "naïve — ünïcode ☃ 𝄞",
           "", "{}", "\u2028\u2029"]


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
        # The bytes themselves, not only their hashes, for one event with every field set.
        assert merkle.leaf_hash(leaf_bytes(stored[0])) == expected[0]
        assert b'"v":1}' in leaf_bytes(stored[0]) and leaf_bytes(stored[0]).isascii()


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
