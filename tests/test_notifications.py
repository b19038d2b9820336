"""E-mail notifications with a real SMTP server on loopback (aiosmtpd)."""
import uuid

import pytest
from sqlalchemy import select

from portal.db import get_session
from portal.models import Notification
from tests.conftest import free_port, login, make_test_app
from tests.referral_world import build_world
from tests.test_referrals import NAME, NOTE, PHONE_E164, act, form, send


@pytest.fixture
def mail_app(database_url, tmp_path, smtp, app):
    controller, _ = smtp
    mail_app = make_test_app(database_url, tmp_path, PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=str(controller.port),
                             PORTAL_BASE_URL="https://portal.example")
    yield mail_app
    mail_app.extensions["portal.db"].dispose()


def closed(response):
    """Close the response as a WSGI server does once it is sent; that is when the outbox is tried."""
    response.close()
    return response


def client_for(app, user):
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    return client


def test_receiving_team_and_sender_are_told_without_personal_details(mail_app, smtp):
    """New referral → every member of the receiving team; accepted → the sender. A link and a status only."""
    _, inbox = smtp
    world = build_world(mail_app)
    response = closed(send(client_for(mail_app, world.nurse), form(world)))
    referral_id = response.location.rsplit("/", 1)[1]
    team = {world.north_admin.email, world.north_staff.email, world.north_staff2.email}
    assert {r for rcpts, _ in inbox.messages for r in rcpts} == team
    assert closed(act(client_for(mail_app, world.north_staff), referral_id, "accept")).status_code == 303
    last_rcpts, last = inbox.messages[-1]
    assert last_rcpts == [world.nurse.email] and "now accepted" in last
    for _, content in inbox.messages:
        assert f"https://portal.example/referrals/{referral_id}" in content
        for secret in (NAME, "Tavon", PHONE_E164, "8675309", "afternoons", NOTE):
            assert secret not in content
    with mail_app.app_context():
        assert get_session().scalar(select(Notification).where(Notification.sent_at.is_(None))) is None


def test_mail_server_down_loses_and_blocks_nothing(database_url, tmp_path, app, smtp):
    """With the SMTP port closed the referral is sent anyway; the outbox keeps the mail until it works."""
    controller, inbox = smtp
    closed_port = free_port()
    down = make_test_app(database_url, tmp_path, PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=str(closed_port))
    world = build_world(down)
    response = closed(send(client_for(down, world.nurse), form(world)))
    assert response.status_code == 303
    with down.app_context():
        waiting = get_session().scalars(select(Notification)).all()
        assert len(waiting) == 3 and all(n.sent_at is None and n.attempts == 1 for n in waiting)
        assert {n.last_error for n in waiting} == {"ConnectionRefusedError"}
    down.extensions["portal.db"].dispose()
    up = make_test_app(database_url, tmp_path, PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=str(controller.port))
    with up.app_context():
        from portal.notify import deliver_pending
        assert deliver_pending(get_session(), up.config["PORTAL"]) == (3, 0)
    assert len(inbox.messages) == 3
    up.extensions["portal.db"].dispose()
