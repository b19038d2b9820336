"""The outbox talks to the mail server with no transaction open.

On SQLite an open transaction holds the write lock that every request needs (transactions begin
IMMEDIATE), so a slow mail server must never hold the database: here the server takes its time
over each message while another connection writes.
"""
import threading

from sqlalchemy import select, update

from portal.auth import tokens
from portal.db import get_session
from portal.models import Notification, User
from portal.notify import deliver_pending
from tests.conftest import make_test_app


def test_a_slow_mail_server_does_not_hold_the_database(database_url, tmp_path, make, slow_smtp):
    controller, inbox = slow_smtp
    app = make_test_app(database_url, tmp_path, PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=str(controller.port))
    try:
        user = make.user(make.org("city_office"))
        with app.app_context():
            db = get_session()
            tokens.request_reset(db, app.extensions["portal.keyring"], user.email)  # queues one mail
            db.commit()

        results = []

        def deliver():
            with app.app_context():
                results.append(deliver_pending(get_session(), app.config["PORTAL"]))

        thread = threading.Thread(target=deliver)
        thread.start()
        assert inbox.receiving.wait(10)
        with app.app_context():  # a request that writes while the server is still receiving
            db = get_session()
            db.execute(update(User).where(User.id == user.id).values(display_name="Renamed meanwhile"))
            db.commit()
        # Had delivery held its transaction while sending, the write would have waited for the mail.
        assert inbox.messages == []
        thread.join(20)

        assert results == [(1, 0)] and [rcpts for rcpts, _ in inbox.messages] == [[user.email]]
        with app.app_context():
            sent = get_session().scalar(select(Notification))
            assert sent.sent_at is not None and sent.attempts == 1
    finally:
        app.extensions["portal.db"].dispose()
