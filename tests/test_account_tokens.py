"""Invitations and password resets by e-mail, with a real SMTP server on loopback (aiosmtpd).

Each link is followed as a person would: open it, choose a password, sign in. Then every way a
link can be wrong -- expired, reused, of another purpose, tampered, replaced, for a deactivated
account -- and an unknown address, which gets the same answer in the same time and no mail.
"""
import email
import email.policy
import hashlib
import json
import re
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.admin import service as admin_service
from portal.auth import lockout, tokens
from portal.auth.recovery_views import ANSWER_SECONDS
from portal.db import get_session, utcnow
from portal.models import AccountToken, AuditEvent, Notification, Organization, User
from portal.notify import deliver_pending
from tests.conftest import PASSWORD, csrf_token, free_port, login, make_test_app
from tests.test_notifications import closed

BASE = "https://portal.example"
NEW_PASSWORD = "tangerine kettle orbit 42"
INVITEE = "new.person@example.test"
INVITEE_NAME = "Ngozi Adeyemi-Whitfield"
LINK = re.compile(r"https://portal\.example(/invitation|/password/reset)\?token=([A-Za-z0-9_-]{43})")


@pytest.fixture
def inbox(smtp):
    return smtp[1]


@pytest.fixture
def mail_app(database_url, tmp_path, smtp, app):
    """The portal with a working mail server; `app` (same database) empties the tables after."""
    controller, _ = smtp
    mail_app = make_test_app(database_url, tmp_path, PORTAL_SMTP_HOST="127.0.0.1",
                             PORTAL_SMTP_PORT=str(controller.port), PORTAL_BASE_URL=BASE)
    yield mail_app
    mail_app.extensions["portal.db"].dispose()


# -- helpers -----------------------------------------------------------------------------------
def mails_to(inbox, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_string(content, policy=email.policy.default)
            for recipients, content in inbox.messages if recipients == [address]]


def link_in(message) -> tuple[str, str]:
    """(path with query, raw token) of the one portal link in a mail."""
    found = LINK.findall(message.get_content())
    assert len(found) == 1, message.get_content()
    path, raw = found[0]
    return f"{path}?token={raw}", raw


def follow(client, path: str):
    return client.get(path)


def choose_password(client, password: str, confirm: str | None = None):
    token = csrf_token(client, "/password/new")
    return client.post("/password/new", data={"password": password, "csrf_token": token,
                                              "confirm": password if confirm is None else confirm})


def signed_in(app, user) -> object:
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    return client


def invite(admin_client, org, address: str = INVITEE, name: str = INVITEE_NAME):
    token = csrf_token(admin_client, f"/admin/organizations/{org.id}/users/new")
    return closed(admin_client.post(f"/admin/organizations/{org.id}/users/new", data={
        "email": address, "display_name": name, "role": "staff", "csrf_token": token}))


def ask_reset(client, address: str):
    token = csrf_token(client, "/password/forgot")
    return client.post("/password/forgot", data={"email": address, "csrf_token": token})


def issue(app, user, purpose: str, now=None) -> str:
    """A link made through the real service, committed; returns the raw token."""
    with app.app_context():
        db = get_session()
        raw = tokens.issue(db, app.extensions["portal.keyring"], db.get(User, user.id), purpose, now)
        db.commit()
        return raw


def path_for(purpose: str, raw: str) -> str:
    return f"{'/invitation' if purpose == tokens.INVITE else '/password/reset'}?token={raw}"


# -- the invitation, end to end ------------------------------------------------------------------
def test_invited_person_follows_the_link_sets_a_password_and_signs_in(mail_app, inbox, make):
    """An org admin invites by e-mail; the mail carries only a link (no name, no organization);
    following it and choosing a password activates the account, which then signs in. The link is
    stored only as a hash once its mail has gone, and works once."""
    org = make.org("city_office", name="Office of Violence Prevention")
    admin = make.user(org, "org_admin")
    admin_client = signed_in(mail_app, admin)
    response = invite(admin_client, org)
    assert response.status_code == 200 and "Invitation sent" in response.get_data(as_text=True)

    [mail] = mails_to(inbox, INVITEE)
    assert mail["Subject"] == "Peace Portal: you are invited"
    path, raw = link_in(mail)
    assert path.startswith("/invitation?token=")
    for detail in (INVITEE_NAME, "Ngozi", org.name, admin.email, admin.display_name):
        assert detail not in mail.as_string()
    assert "invited; the link works until" in admin_client.get(f"/admin/organizations/{org.id}").get_data(as_text=True)
    with mail_app.app_context():
        stored = get_session().scalar(select(AccountToken))
        assert stored.token_hash == hashlib.sha256(raw.encode()).hexdigest()
        assert stored.wrapped_token is None and stored.kek_id is None  # forgotten once the mail left
        assert stored.expires_at - stored.created_at == timedelta(days=7)
        assert get_session().scalar(select(User.password_hash).where(User.email == INVITEE)) is None

    person = mail_app.test_client()
    opened = follow(person, path)
    assert opened.status_code == 303 and opened.location == "/password/new"  # the token leaves the URL
    page = person.get("/password/new").get_data(as_text=True)
    assert "Choose your password" in page and INVITEE in page
    done = choose_password(person, NEW_PASSWORD)
    assert done.status_code == 303 and done.location == "/login"
    assert "Your password is set and your account is active" in person.get("/login").get_data(as_text=True)

    assert login(person, INVITEE, NEW_PASSWORD).status_code == 302
    assert f"Welcome, {INVITEE_NAME}" in person.get("/").get_data(as_text=True)
    assert "invited; the link works" not in admin_client.get(f"/admin/organizations/{org.id}").get_data(as_text=True)
    again = follow(mail_app.test_client(), path)
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)
    with mail_app.app_context():  # both in the audit log, by id and reason, never by address
        events = {e.action: e for e in get_session().scalars(select(AuditEvent))}
        invitee = get_session().scalar(select(User.id).where(User.email == INVITEE))
    assert events["auth.invitation_accepted"].actor_id == invitee
    assert json.loads(events["auth.account_link_refused"].detail) == {"purpose": "invite", "reason": "used"}


def test_resend_replaces_the_link(mail_app, inbox, make):
    """"Send a new invitation" mails a new link; the old one stops working, the new one works."""
    org = make.org("city_office")
    admin_client = signed_in(mail_app, make.user(org, "org_admin"))
    invite(admin_client, org)
    with mail_app.app_context():
        invitee = get_session().scalar(select(User).where(User.email == INVITEE))
    page = admin_client.get(f"/admin/organizations/{org.id}").get_data(as_text=True)
    assert "Send a new invitation" in page
    resent = closed(admin_client.post(f"/admin/users/{invitee.id}/invitation",
                                      data={"csrf_token": csrf_token(admin_client, "/")}))
    assert resent.status_code == 303
    first, second = (link_in(mail)[0] for mail in mails_to(inbox, INVITEE))
    assert first != second
    old = follow(mail_app.test_client(), first)
    assert old.status_code == 404 and "not valid" in old.get_data(as_text=True)
    person = mail_app.test_client()
    assert follow(person, second).status_code == 303
    assert choose_password(person, NEW_PASSWORD).status_code == 303


def test_outbox_keeps_the_link_wrapped_until_the_mail_server_answers(database_url, tmp_path, mail_app, inbox, make):
    """With the mail server down the invitation is made anyway and waits in the outbox, its token
    wrapped by the key-encryption key (never in clear). A resend before it went out drops the stale
    mail. Once the server answers, exactly one mail leaves -- with the newest link -- and only the
    hash stays."""
    down = make_test_app(database_url, tmp_path, PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=str(free_port()))
    org = make.org("city_office")
    admin_client = signed_in(down, make.user(org, "org_admin"))
    assert invite(admin_client, org).status_code == 200
    with down.app_context():
        db = get_session()
        invitee = db.scalar(select(User).where(User.email == INVITEE))
        waiting = db.scalar(select(Notification).where(Notification.recipient_id == invitee.id))
        assert waiting.sent_at is None and waiting.attempts == 1 and waiting.last_error == "ConnectionRefusedError"
        assert db.scalar(select(AccountToken.wrapped_token)) is not None
    token = csrf_token(admin_client, "/")
    closed(admin_client.post(f"/admin/users/{invitee.id}/invitation", data={"csrf_token": token}))
    down.extensions["portal.db"].dispose()
    with mail_app.app_context():
        db = get_session()
        assert db.scalar(select(func.count()).select_from(Notification)) == 1
        assert deliver_pending(db, mail_app.config["PORTAL"]) == (1, 0)
        newest = db.scalar(select(AccountToken).where(AccountToken.revoked_at.is_(None)))
        assert newest.wrapped_token is None
        [mail] = mails_to(inbox, INVITEE)
        _, raw = link_in(mail)
        assert hashlib.sha256(raw.encode()).hexdigest() == newest.token_hash
        assert raw.encode() not in b"".join(t.token_hash.encode() for t in db.scalars(select(AccountToken)))


# -- the password reset, end to end --------------------------------------------------------------
def test_password_reset_by_mail_ends_every_session_and_clears_the_lockout(mail_app, inbox, make):
    """Forgot password → mail → link → new password. The old password stops working, the account's
    open sessions end, and the lockout its address had earned is lifted."""
    user = make.user(make.org("city_office"))
    elsewhere = signed_in(mail_app, user)
    attacker = mail_app.test_client()
    for _ in range(lockout.THRESHOLD):
        login(attacker, user.email, "a wrong guess at it")
    assert login(mail_app.test_client(), user.email).status_code == 401  # locked

    person = mail_app.test_client()
    assert 'href="/password/forgot"' in person.get("/login").get_data(as_text=True)
    asked = closed(ask_reset(person, user.email))
    assert asked.status_code == 303 and asked.location == "/password/forgot/sent"
    answer = person.get(asked.location).get_data(as_text=True)
    assert "If an account exists for that address, we have sent a link" in answer
    [mail] = mails_to(inbox, user.email)
    assert mail["Subject"] == "Peace Portal: reset your password"
    path, _ = link_in(mail)
    assert path.startswith("/password/reset?token=")
    assert follow(person, path).status_code == 303
    assert "Choose a new password" in person.get("/password/new").get_data(as_text=True)
    assert choose_password(person, NEW_PASSWORD).status_code == 303

    assert elsewhere.get("/").status_code == 302  # the session opened before the reset has ended
    assert login(mail_app.test_client(), user.email, PASSWORD).status_code == 401
    assert login(mail_app.test_client(), user.email, NEW_PASSWORD).status_code == 302
    with mail_app.app_context():
        assert lockout.failures(get_session(), user.email) == 0
        used = get_session().scalar(select(AccountToken))
        assert used.expires_at - used.created_at == timedelta(hours=1) and used.used_at is not None


def test_unknown_address_gets_the_same_answer_in_the_same_time_and_no_mail(mail_app, inbox, make):
    """The same redirect, the same page, no sooner than ANSWER_SECONDS, whether the address is
    unknown, belongs to a deactivated account or to an active one; only the active one gets mail."""
    active, deactivated = make.user(make.org("city_office")), make.user(make.org("city_office"))
    with mail_app.app_context():
        db = get_session()
        db.get(User, deactivated.id).active = False
        db.commit()
    answers = {}
    csrf = re.compile(r"[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}")  # each page's own CSRF token
    for address in ("nobody-at-all@example.test", deactivated.email, active.email):
        client = mail_app.test_client()
        started = time.monotonic()
        response = ask_reset(client, address)
        answers[address] = (time.monotonic() - started, response.status_code, response.location,
                            csrf.sub("TOKEN", client.get(response.location).get_data(as_text=True)))
        closed(response)
    timings = [seconds for seconds, *_ in answers.values()]
    assert min(timings) >= ANSWER_SECONDS and max(timings) - min(timings) < 0.25
    assert len({tuple(rest) for _, *rest in answers.values()}) == 1  # status, location and page alike
    assert [recipients for recipients, _ in inbox.messages] == [[active.email]]


# -- bad links and bad passwords -------------------------------------------------------------------
@pytest.mark.parametrize("purpose, age", [(tokens.RESET, timedelta(hours=1, seconds=1)),
                                          (tokens.INVITE, timedelta(days=7, seconds=1))])
def test_expired_link_is_refused(mail_app, make, purpose, age):
    """A reset link lives an hour, an invitation 7 days: one second later it is refused (410)."""
    user = make.user(make.org("city_office"))
    raw = issue(mail_app, user, purpose, now=utcnow() - age)
    response = follow(mail_app.test_client(), path_for(purpose, raw))
    assert response.status_code == 410 and "This link has expired" in response.get_data(as_text=True)


def test_used_link_cannot_be_used_again_even_from_a_tab_opened_before(mail_app, make):
    """Two browsers open the same link; the first sets the password; the second is refused and the
    first password stands."""
    user = make.user(make.org("city_office"))
    raw = issue(mail_app, user, tokens.RESET)
    first, second = mail_app.test_client(), mail_app.test_client()
    assert follow(first, path_for(tokens.RESET, raw)).status_code == 303
    assert follow(second, path_for(tokens.RESET, raw)).status_code == 303
    second_token = csrf_token(second, "/password/new")
    assert choose_password(first, NEW_PASSWORD).status_code == 303
    other = "another fine passphrase"
    late = second.post("/password/new", data={"password": other, "confirm": other, "csrf_token": second_token})
    assert late.status_code == 410 and "already been used" in late.get_data(as_text=True)
    assert follow(mail_app.test_client(), path_for(tokens.RESET, raw)).status_code == 410
    assert login(mail_app.test_client(), user.email, NEW_PASSWORD).status_code == 302


def test_link_of_another_purpose_is_not_valid(mail_app, make):
    """An invitation token at the reset address, or a reset token at the invitation address: 404."""
    user = make.user(make.org("city_office"))
    invitation, reset = issue(mail_app, user, tokens.INVITE), issue(mail_app, user, tokens.RESET)
    for path in (f"/password/reset?token={invitation}", f"/invitation?token={reset}"):
        response = follow(mail_app.test_client(), path)
        assert response.status_code == 404 and "This link is not valid" in response.get_data(as_text=True)
    assert follow(mail_app.test_client(), path_for(tokens.RESET, reset)).status_code == 303  # untouched


@pytest.mark.parametrize("tamper", [
    lambda raw: raw[:-1] + ("A" if raw[-1] != "A" else "B"),
    lambda raw: raw[:20] + ("x" if raw[20] != "x" else "y") + raw[21:],
    lambda raw: raw[:-2],
    lambda raw: raw + "A",
    lambda raw: "",
    lambda raw: "../../etc/passwd",
], ids=["last-char", "middle-char", "truncated", "extended", "empty", "garbage"])
def test_tampered_link_is_not_valid(mail_app, make, tamper):
    user = make.user(make.org("city_office"))
    raw = issue(mail_app, user, tokens.RESET)
    response = follow(mail_app.test_client(), path_for(tokens.RESET, tamper(raw)))
    assert response.status_code == 404 and "This link is not valid" in response.get_data(as_text=True)
    assert follow(mail_app.test_client(), "/password/reset").status_code == 404  # no token at all


@pytest.mark.parametrize("password, confirm, message", [
    ("Password1234", None, "on a list of commonly used passwords"),
    ("Q1W2E3R4T5Y6", None, "on a list of commonly used passwords"),  # compared case-insensitively
    ("short one", None, "Use at least 12 characters."),
    ("a perfectly good passphrase", "a perfectly good passphrasE", "The two passwords are not the same."),
], ids=["common", "common-other-case", "short", "mismatch"])
def test_refused_password_keeps_the_link_usable(mail_app, make, password, confirm, message):
    """A common, short or mistyped password is a 400 with its reason; nothing is spent: the same
    link then takes a good password."""
    user = make.user(make.org("city_office"))
    raw = issue(mail_app, user, tokens.RESET)
    client = mail_app.test_client()
    assert follow(client, path_for(tokens.RESET, raw)).status_code == 303
    refused = choose_password(client, password, confirm)
    assert refused.status_code == 400 and message in refused.get_data(as_text=True)
    assert login(mail_app.test_client(), user.email, PASSWORD).status_code == 302  # unchanged
    assert choose_password(client, NEW_PASSWORD).status_code == 303


def test_deactivated_account_gets_no_usable_link(mail_app, inbox, make):
    """A link issued before the account was deactivated stops working; asking again sends nothing."""
    org = make.org("city_office")
    user, admin = make.user(org), make.user(org, "org_admin")
    raw = issue(mail_app, user, tokens.RESET)
    with mail_app.app_context():
        db = get_session()
        admin_service.set_active(db, db.get(User, admin.id), db.get(User, user.id), False)
        db.commit()
    assert follow(mail_app.test_client(), path_for(tokens.RESET, raw)).status_code == 404
    closed(ask_reset(mail_app.test_client(), user.email))
    assert inbox.messages == []


def test_choosing_a_password_without_a_link_is_refused(mail_app):
    client = mail_app.test_client()
    assert client.get("/password/new").status_code == 404
    response = client.post("/password/new", data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                                  "csrf_token": csrf_token(client, "/login")})
    assert response.status_code == 404


def test_reset_requests_for_one_account_are_capped(mail_app, inbox, make):
    """Asking again and again cannot flood someone's inbox: three mails an hour per account, and
    each new link replaces the previous one."""
    user = make.user(make.org("city_office"))
    for _ in range(5):
        assert closed(ask_reset(mail_app.test_client(), user.email)).status_code == 303
    mails = mails_to(inbox, user.email)
    assert len(mails) == tokens.RESETS_PER_HOUR
    *older, newest = (link_in(mail)[0] for mail in mails)
    assert all(follow(mail_app.test_client(), path).status_code == 404 for path in older)
    assert follow(mail_app.test_client(), newest).status_code == 303


# -- from the attacker's side ------------------------------------------------------------------------
@pytest.mark.parametrize("kind, role", [("police_partner", "org_admin"), ("police_partner", "staff"),
                                        ("cvi_team", "org_admin"), ("hospital_program", "org_admin")])
def test_nobody_invites_into_an_organization_not_theirs(mail_app, inbox, make, kind, role):
    """A police account, or another organization's admin: 404 for the form, the invitation and a
    resend for our pending invitee; no account, no token, no mail."""
    ours = make.org("hospital_program")
    with mail_app.app_context():
        db = get_session()
        pending = admin_service.invite_user(db, mail_app.extensions["portal.keyring"], db.get(Organization, ours.id),
                                            "pending@example.test", "Pending Person", "staff")
        db.commit()
        tokens_before = db.scalar(select(func.count()).select_from(AccountToken))
    outsider = signed_in(mail_app, make.user(make.org(kind), role))
    token = csrf_token(outsider, "/")
    assert outsider.get(f"/admin/organizations/{ours.id}/users/new").status_code == 404
    planted = closed(outsider.post(f"/admin/organizations/{ours.id}/users/new", data={
        "email": "plant@evil.test", "display_name": "Plant", "role": "org_admin", "csrf_token": token}))
    assert planted.status_code == 404
    assert closed(outsider.post(f"/admin/users/{pending.id}/invitation", data={"csrf_token": token})).status_code == 404
    with mail_app.app_context():
        db = get_session()
        assert db.scalar(select(User).where(User.email == "plant@evil.test")) is None
        assert db.scalar(select(func.count()).select_from(AccountToken)) == tokens_before
    assert [r for r, _ in inbox.messages if r != ["pending@example.test"]] == []


def test_signed_out_visitor_cannot_reach_the_admin_pages(mail_app, inbox, make):
    """Signed out: the invitation form and a resend redirect to /login, even with the login page's
    CSRF token; nothing is created, nothing is sent."""
    org = make.org("city_office")
    user = make.user(org)
    visitor = mail_app.test_client()
    assert visitor.get(f"/admin/organizations/{org.id}/users/new").location.startswith("/login")
    token = csrf_token(visitor, "/login")
    posted = closed(visitor.post(f"/admin/organizations/{org.id}/users/new", data={
        "email": "plant@evil.test", "display_name": "Plant", "role": "org_admin", "csrf_token": token}))
    assert posted.status_code == 302 and posted.location.startswith("/login")
    resend = closed(visitor.post(f"/admin/users/{user.id}/invitation", data={"csrf_token": token}))
    assert resend.status_code == 302 and resend.location.startswith("/login")
    with mail_app.app_context():
        assert get_session().scalar(select(func.count()).select_from(User).where(User.email == "plant@evil.test")) == 0
        assert get_session().scalar(select(func.count()).select_from(AccountToken)) == 0
    assert inbox.messages == []


def test_an_invited_account_gets_no_referral_mail_until_it_joins(app, make):
    """Until the invitation is followed, the invitation is the only mail an address receives."""
    from portal.referrals import service
    from portal.referrals.inputs import ConsentInput, ReferralInput
    team = make.org("cvi_team")
    joined = make.user(team, "staff")
    nurse = make.user(make.org("hospital_program"), "staff")
    with app.app_context():
        db = get_session()
        invited_id = admin_service.invite_user(db, app.extensions["portal.keyring"], db.get(Organization, team.id),
                                               "invited@example.test", "Invited", "staff").id
        admin_service.create_zone(db, "Z1", "Zone 1")
        db.commit()
        ctx = service.Context(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"],
                              db.get(User, nurse.id))
        referral = service.create_referral(ctx, ReferralInput(
            receiver_org_id=team.id, person={"preferred_name": "P", "phone": "+15550100100"}, age_band="18_24",
            zone="Z1", reason="assault", services=["intensive_mentoring"], urgency="routine", note=None,
            consent=ConsentInput("verbal", [team.id], ["contact"], ctx.now + timedelta(days=30), ctx.now)))
        recipients = set(db.scalars(select(Notification.recipient_id).where(Notification.referral_id == referral.id)))
        db.rollback()
    assert recipients == {joined.id} and invited_id not in recipients


def test_retention_deletes_links_dead_for_a_month(app, make):
    user = make.user(make.org("city_office"))
    with app.app_context():
        db = get_session()
        tokens.issue(db, app.extensions["portal.keyring"], db.get(User, user.id), tokens.RESET,
                     now=utcnow() - timedelta(days=40))
        fresh = tokens.issue(db, app.extensions["portal.keyring"], db.get(User, user.id), tokens.RESET)
        db.commit()
        assert tokens.prune(db, utcnow()) == 1
        db.commit()
        assert tokens.find(db, fresh, tokens.RESET).user_id == user.id
