"""Each mail in the outbox goes out once, whatever runs of `portal notifications send` overlap.

A run claims a row for a lease (portal/notify.py CLAIM_LEASE) before it talks to the mail server;
another run leaves a leased row alone until the send is recorded or the lease runs out.
"""
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from portal.auth import tokens
from portal.db import get_session, utcnow
from portal.models import Notification
from portal.notify import deliver_pending
from tests.conftest import free_port, make_test_app


def smtp_app(database_url, tmp_path, port):
    return make_test_app(database_url, tmp_path, PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=str(port))


def queue_resets(app, users) -> None:
    """One password-reset mail per user, waiting in the outbox."""
    with app.app_context():
        db = get_session()
        for user in users:
            tokens.request_reset(db, app.extensions["portal.keyring"], user.email)
        db.commit()


def deliver(app):
    with app.app_context():
        return deliver_pending(get_session(), app.config["PORTAL"])


def outbox(app) -> list[Notification]:
    with app.app_context():
        return list(get_session().scalars(select(Notification)))


def test_a_run_that_starts_while_another_sends_sends_nothing(database_url, tmp_path, make, slow_smtp):
    """Cron starts run B while run A still waits on a slow mail server: B must not send A's mails again."""
    controller, inbox = slow_smtp
    app = smtp_app(database_url, tmp_path, controller.port)
    try:
        org = make.org("city_office")
        users = [make.user(org), make.user(org)]
        queue_resets(app, users)
        results = []
        run_a = threading.Thread(target=lambda: results.append(deliver(app)))
        run_a.start()
        assert inbox.receiving.wait(10)  # A has claimed both and the server is taking the first

        assert deliver(app) == (0, 0)  # run B, on its own connection
        run_a.join(30)

        assert results == [(2, 0)]
        assert sorted(rcpt for rcpts, _ in inbox.messages for rcpt in rcpts) == sorted(u.email for u in users)
        assert [(n.attempts, n.sent_at is not None) for n in outbox(app)] == [(1, True), (1, True)]
    finally:
        app.extensions["portal.db"].dispose()


def test_a_failed_send_is_retried_by_the_next_run(database_url, tmp_path, make, smtp):
    controller, inbox = smtp
    down = smtp_app(database_url, tmp_path, free_port())  # nothing listens there
    up = smtp_app(database_url, tmp_path, controller.port)
    try:
        user = make.user(make.org("city_office"))
        queue_resets(down, [user])
        assert deliver(down) == (0, 1)
        [failed] = outbox(down)
        assert (failed.attempts, failed.sent_at, failed.claimed_until) == (1, None, None)  # lease released
        assert failed.last_error == "ConnectionRefusedError"

        assert deliver(up) == (1, 0)
        assert [rcpts for rcpts, _ in inbox.messages] == [[user.email]]
        [sent] = outbox(up)
        assert sent.attempts == 2 and sent.sent_at is not None and sent.claimed_until is None
        assert deliver(up) == (0, 0) and len(inbox.messages) == 1
    finally:
        down.extensions["portal.db"].dispose()
        up.extensions["portal.db"].dispose()


@pytest.mark.parametrize("lease_left, retried", [(timedelta(minutes=-1), True), (timedelta(minutes=5), False)])
def test_a_dead_workers_claim_is_retried_once_its_lease_runs_out(database_url, tmp_path, make, smtp,
                                                                lease_left, retried):
    """A worker that died mid-send leaves attempts counted and the lease taken; nothing else marks it."""
    controller, inbox = smtp
    app = smtp_app(database_url, tmp_path, controller.port)
    try:
        user = make.user(make.org("city_office"))
        queue_resets(app, [user])
        with app.app_context():
            db = get_session()
            db.execute(update(Notification).values(attempts=1, claimed_until=utcnow() + lease_left))
            db.commit()

        assert deliver(app) == ((1, 0) if retried else (0, 0))
        assert [rcpts for rcpts, _ in inbox.messages] == ([[user.email]] if retried else [])
        [notification] = outbox(app)
        assert (notification.sent_at is not None, notification.attempts) == ((True, 2) if retried else (False, 1))
    finally:
        app.extensions["portal.db"].dispose()
