"""E-mail notifications through an outbox: queued with the change, sent after the response.

A message says that something happened and links to the portal; it never carries a name, a
phone number, a note or anything else about the person. If the mail server is down the rows
wait, and the next request (or `portal notifications send` from cron) tries again.
"""
from __future__ import annotations

import logging
import smtplib
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.message import EmailMessage

from flask import current_app
from sqlalchemy import bindparam, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from portal.auth import account_mail, tokens
from portal.db import utcnow
from portal.models import AccountToken, LinkedIdentity, Notification, Referral, User
from portal.models.notification import ACCOUNT_KINDS
from portal.referrals import codes

log = logging.getLogger("portal.notify")

# The sender hears about these changes; the everyday work in between stays with the team.
SENDER_HEARS = ("accepted", "declined", "completed", "cancelled", "revoked")
MAX_ATTEMPTS = 10
# How long a claimed notification is left to the run that claimed it. Longer than any send of one
# batch (100 mails, each well under a second on a working server; the SMTP timeout is 10 s a step),
# so no other run sends it meanwhile; a run that dies mid-send leaves it retried after the lease.
CLAIM_LEASE = timedelta(minutes=10)


# The members of a team who hear of a new referral: active and joined. Invited but not yet joined
# (no password, no linked sign-in): the invitation is their only mail.
_TEAM = select(User.id).where(
    User.organization_id == bindparam("receiver_org_id"), User.active.is_(True),
    or_(User.password_hash.is_not(None), exists().where(LinkedIdentity.user_id == User.id)))
_NEW_REFERRAL = ("kind", "referral_id", "account_token_id", "status", "created_at", "sent_at", "attempts",
                 "last_error")
# Their mails in one statement, where the database makes the ids itself (PostgreSQL). Built once:
# composing it is most of what it costs.
_TEAM_MAIL = insert(Notification.__table__).from_select(
    ["id", "recipient_id", *_NEW_REFERRAL],
    _TEAM.with_only_columns(func.gen_random_uuid(), User.id,
                            *(bindparam(name, type_=Notification.__table__.c[name].type) for name in _NEW_REFERRAL)),
    include_defaults=False)


def enqueue_new_referral(db: Session, referral: Referral, now: datetime | None = None) -> None:
    """A mail to every joined, active member of the receiving team; the team is never loaded as objects."""
    row = {"kind": "new_referral", "referral_id": referral.id, "account_token_id": None, "status": "sent",
           "created_at": now or utcnow(), "sent_at": None, "attempts": 0, "last_error": None}
    if db.get_bind().dialect.name == "postgresql":
        db.execute(_TEAM_MAIL, {"receiver_org_id": referral.receiver_org_id, **row})
        return
    recipients = db.scalars(_TEAM, {"receiver_org_id": referral.receiver_org_id}).all()
    if recipients:
        db.execute(insert(Notification.__table__),
                   [{"id": uuid.uuid4(), "recipient_id": user_id, **row} for user_id in recipients])


def enqueue_status_change(db: Session, referral: Referral, actor: User | None) -> None:
    if referral.status not in SENDER_HEARS or (actor and actor.organization_id == referral.sender_org_id):
        return
    creator = db.get(User, referral.created_by_id)
    if creator is not None and creator.active:
        db.add(Notification(kind="status_changed", recipient_id=creator.id, referral_id=referral.id,
                            status=referral.status))


def compose(notification: Notification, recipient: User, base_url: str, sender: str) -> EmailMessage:
    link = f"{base_url}/referrals/{notification.referral_id}"
    status = codes.STATUSES[notification.status]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient.email
    if notification.kind == "new_referral":
        message["Subject"] = "Peace Portal: a new referral for your team"
        body = "A new referral is waiting for your team."
    else:
        message["Subject"] = f"Peace Portal: a referral you sent is now {status.lower()}"
        body = f"A referral you sent is now: {status}."
    message.set_content(f"{body}\n\nOpen it in the portal (sign-in required):\n{link}\n\n"
                        "This message never contains details about the person.\n")
    return message


def _message(db: Session, notification: Notification, recipient: User, config) -> EmailMessage | None:
    """The mail to send; for an account link (auth/account_mail.py) None once it cannot be used."""
    if notification.kind not in ACCOUNT_KINDS:
        return compose(notification, recipient, config.base_url, config.mail_from)
    token = db.get(AccountToken, notification.account_token_id)
    return account_mail.compose(token, recipient, current_app.extensions["portal.keyring"], config.base_url,
                                config.mail_from)


def _sent(db: Session, notification: Notification) -> None:
    notification.sent_at = utcnow()
    if notification.kind in ACCOUNT_KINDS:
        tokens.mail_sent(db.get(AccountToken, notification.account_token_id))  # only the hash remains


@contextmanager
def smtp_connection(smtp: dict):
    """A connection to the configured mail server, upgraded and logged in as configured."""
    with smtplib.SMTP(smtp["host"], smtp["port"], timeout=10) as server:
        if smtp["starttls"]:
            server.starttls()
        if smtp["username"]:
            server.login(smtp["username"], smtp["password"] or "")
        yield server


def deliver_pending(db: Session, config, limit: int = 100) -> tuple[int, int]:
    """Send what waits in the outbox; returns (sent, failed). Never raises for a mail failure.

    Claim and compose, send, record: three steps, so that no transaction stays open while the
    mail server talks (on SQLite an open transaction holds the write lock every request needs).
    """
    if not config.smtp["host"]:
        return 0, 0
    outgoing = _claim(db, config, limit)
    if not outgoing:
        return 0, 0
    errors = _transmit(config.smtp, [message for _, _, message in outgoing])
    for (notification_id, attempts, _), error in zip(outgoing, errors):
        notification = db.get(Notification, notification_id)
        if error is None:
            _sent(db, notification)
        else:
            notification.last_error = error
        if notification.attempts == attempts:  # still our claim (not re-claimed after an expired lease)
            notification.claimed_until = None  # sent, or free for the next run to retry
    db.commit()
    failed = sum(error is not None for error in errors)
    return len(errors) - failed, failed


def _claim(db: Session, config, limit: int) -> list[tuple]:
    """(notification id, attempts, message) for each waiting notification this worker claimed; committed.

    A claimed row is leased to this worker: no other run takes it until the send is recorded or,
    if the worker died, the lease has run out. The claim counts the attempt only if nobody has
    counted it since we read it, so two workers that find the same free row send it once.
    """
    now = utcnow()
    lease_free = or_(Notification.claimed_until.is_(None), Notification.claimed_until < now)
    pending = list(db.scalars(select(Notification).where(Notification.sent_at.is_(None),
                                                         Notification.attempts < MAX_ATTEMPTS, lease_free)
                              .order_by(Notification.created_at).limit(limit)))
    outgoing = []
    for notification in pending:
        attempts = notification.attempts
        claimed = db.execute(update(Notification).where(Notification.id == notification.id,
                                                        Notification.attempts == attempts,
                                                        Notification.sent_at.is_(None), lease_free)
                             .values(attempts=attempts + 1, claimed_until=now + CLAIM_LEASE)
                             .execution_options(synchronize_session="fetch")).rowcount
        if not claimed:
            continue
        message = _message(db, notification, db.get(User, notification.recipient_id), config)
        if message is None:  # an account link replaced, used or expired before it went out
            db.delete(notification)
            continue
        outgoing.append((notification.id, attempts + 1, message))
    db.commit()
    return outgoing


def _transmit(smtp: dict, messages: list[EmailMessage]) -> list[str | None]:
    """Send each message; per message None, or the exception's class name when it was not sent."""
    errors: list[str | None] = []
    try:
        with smtp_connection(smtp) as server:
            for message in messages:
                try:
                    server.send_message(message)
                    errors.append(None)
                except smtplib.SMTPException as error:
                    errors.append(type(error).__name__)
    except (OSError, smtplib.SMTPException) as error:
        unsent = len(messages) - len(errors)
        if unsent:
            log.warning("mail server unavailable (%s); %d notification(s) wait in the outbox",
                        type(error).__name__, unsent)
        errors += [type(error).__name__] * unsent
    return errors


def init_app(app) -> None:
    """After a successful change, try the outbox once the response has gone to the user."""
    from flask import request

    @app.after_request
    def _deliver_after_response(response):
        config = app.config["PORTAL"]
        if request.method == "POST" and response.status_code < 400 and config.smtp["host"]:
            def deliver():
                with app.app_context():
                    from portal.db import get_session
                    try:
                        deliver_pending(get_session(), config)
                    except Exception:  # noqa: BLE001 - delivery must never break a request
                        log.exception("notification delivery failed")
            response.call_on_close(deliver)
        return response
