"""The embedded SQLite database with two writers at once, as `make run` serves it.

A request reads, then writes its audit events at commit. If another request commits in between,
a deferred SQLite transaction cannot upgrade its stale read snapshot to a write and fails at once
("database is locked") without waiting; the portal's transactions therefore begin IMMEDIATE.
"""
import threading

from sqlalchemy import text

from portal.db import make_engine


def test_a_transaction_that_read_can_still_write_after_another_commits(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'writers.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (body TEXT)"))

    other_done = threading.Event()
    errors = []

    def other_writer():
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO notes VALUES ('other')"))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        other_done.set()

    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM notes")).scalar_one() == 0
        thread = threading.Thread(target=other_writer)
        thread.start()
        # Deferred, the other writer would commit now and our INSERT would fail; immediate, it waits.
        other_done.wait(0.5)
        conn.execute(text("INSERT INTO notes VALUES ('first')"))
    thread.join(20)

    assert errors == []
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT body FROM notes")).scalars()) == ["first", "other"]
    engine.dispose()
