"""The second factor: TOTP enrollment, the code step of sign-in, recovery codes and the step-up
before exports -- tested with the real forms, database and crypto, mostly from the attacker's side."""
from __future__ import annotations

import base64
import re
import time
from datetime import timedelta

import pyotp
import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import func, select, update

from portal.auth import flow, mfa
from portal.config import ConfigError
from portal.config import load as load_config
from portal.crypto import DecryptionError, generate_key_entry, parse_keyring
from portal.db import get_session, utcnow
from portal.models import RecoveryCode, User, UserMfa, UserSession
from tests.conftest import (CSRF_META, KEK, PASSWORD, csrf_token, login, make_test_app, second_factor_code,
                            submit_code, totp_code)
from tests.test_cli import run  # noqa: F401  (the `portal` command in a subprocess, as an operator runs it)

WRONG = "That code did not work."
EXPORT = "/dashboards/city/export/by-zone.csv"


# -- helpers --------------------------------------------------------------------------------------
def password_step(client, email: str, **query):
    """Only the password step; returns its response (a redirect to the code or enrollment step)."""
    return client.post("/login", query_string=query,
                       data={"email": email, "password": PASSWORD, "csrf_token": csrf_token(client)})


def credential(app, user) -> UserMfa | None:
    with app.app_context():
        return get_session().get(UserMfa, user.id)


def sessions_of(app, user) -> list[UserSession]:
    with app.app_context():
        return list(get_session().scalars(select(UserSession).where(UserSession.user_id == user.id)))


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


def code_at(secret: str, offset: int) -> str:
    """The code of the time step `offset` steps from now."""
    return pyotp.TOTP(secret).generate_otp(int(time.time()) // mfa.STEP_SECONDS + offset)


def secret_on(page: str) -> str:
    return re.search(r'<code id="totp-secret">([A-Z2-7 ]+)</code>', page).group(1).replace(" ", "")


def recovery_codes_on(page: str) -> list[str]:
    return re.findall(r"<code>([a-z2-7]{5}-[a-z2-7]{5})</code>", page)


def age_step_up(app, user, minutes: int) -> None:
    """Pretend the session's last proof of the second factor was `minutes` ago."""
    with app.app_context():
        db = get_session()
        db.execute(update(UserSession).where(UserSession.user_id == user.id)
                   .values(mfa_verified_at=utcnow() - timedelta(minutes=minutes)))
        db.commit()


# -- who must have one ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind, role, portal_admin, required", [
    ("hospital_program", "staff", False, True), ("cvi_team", "supervisor", False, True),
    ("service_provider", "staff", False, True), ("city_office", "staff", False, False),
    ("police_partner", "staff", False, False), ("city_office", "org_admin", False, True),
    ("police_partner", "org_admin", False, True), ("city_office", "staff", True, True)])
def test_accounts_that_read_personal_details_and_every_admin_must_have_one(app, make, kind, role, portal_admin,
                                                                         required):
    """By default: hospital, CVI and provider accounts (they read personal details), every org_admin
    and every portal admin; city and police accounts that are neither may choose."""
    user = make.user(make.org(kind), role, portal_admin=portal_admin, mfa=False)
    with app.app_context():
        assert mfa.required(get_session().get(User, user.id), app.config["PORTAL"].mfa_required_kinds) is required


def test_the_required_kinds_are_a_setting_and_a_misspelled_kind_stops_the_portal(database_url, tmp_path, make):
    """PORTAL_MFA_REQUIRED_KINDS chooses the kinds (admins always); an unknown kind is a ConfigError."""
    app = make_test_app(database_url, tmp_path, PORTAL_MFA_REQUIRED_KINDS="city_office")
    factory = type(make)(app)
    city, cvi = factory.user(factory.org("city_office"), mfa=False), factory.user(factory.org("cvi_team"), mfa=False)
    cvi_admin = factory.user(factory.org("cvi_team"), "org_admin", mfa=False)
    client = app.test_client()
    assert password_step(client, city.email).location == "/login/enroll"
    assert password_step(app.test_client(), cvi_admin.email).location == "/login/enroll"
    assert password_step(app.test_client(), cvi.email).location == "/"
    app.extensions["portal.db"].dispose()
    with pytest.raises(ConfigError, match="PORTAL_MFA_REQUIRED_KINDS.*police"):
        load_config({"PORTAL_ENV": "test", "PORTAL_MFA_REQUIRED_KINDS": "cvi_team,police"})


# -- enrollment -----------------------------------------------------------------------------------
def test_an_account_that_must_have_one_enrolls_after_the_password_before_any_session(app, client, make):
    """Password right, no second factor yet: the QR page comes next and no session exists; the first
    code confirms it, opens the session and shows ten recovery codes once."""
    user = make.user(make.org("cvi_team"), mfa=False)
    response = password_step(client, user.email)
    assert response.status_code == 302 and response.location == "/login/enroll"
    assert sessions_of(app, user) == [] and not signed_in(client)
    page = client.get("/login/enroll")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and '<svg role="img" aria-label="QR code' in body and 'name="code"' in body
    secret = secret_on(body)
    with app.app_context():
        assert mfa.secret_of(get_session(), app.extensions["portal.keyring"], get_session().get(User, user.id)) \
            == secret
    assert client.get("/login/enroll").get_data(as_text=True).count(" ".join(re.findall("....", secret))) == 1
    assert credential(app, user).confirmed_at is None

    done = submit_code(client, "/login/enroll", totp_code(secret))
    codes = recovery_codes_on(done.get_data(as_text=True))
    assert done.status_code == 200 and len(set(codes)) == 10
    assert credential(app, user).confirmed_at is not None
    [row] = sessions_of(app, user)
    assert row.mfa_verified_at is not None and signed_in(client)
    with app.app_context():
        hashes = set(get_session().scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)))
    assert len(hashes) == 10 and not any(c.replace("-", "") in h for c in codes for h in hashes)
    home = client.get("/").get_data(as_text=True)
    assert not any(c in home for c in codes)  # shown only that once


def test_enrollment_with_a_wrong_code_enables_nothing(app, client, make):
    """A wrong first code: 400 with the reason, the same QR code again, nothing confirmed, no
    recovery codes, no session."""
    user = make.user(make.org("hospital_program"), mfa=False)
    password_step(client, user.email)
    secret = secret_on(client.get("/login/enroll").get_data(as_text=True))
    wrong = submit_code(client, "/login/enroll", code_at(secret, 5))
    body = wrong.get_data(as_text=True)
    assert wrong.status_code == 400 and "That code did not match" in body and secret_on(body) == secret
    assert credential(app, user).confirmed_at is None and sessions_of(app, user) == []
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(RecoveryCode)) == 0
    assert not signed_in(client)
    # The next password step starts over with a new secret: the one shown before is never confirmed.
    password_step(client, user.email)
    assert secret_on(client.get("/login/enroll").get_data(as_text=True)) != secret


def test_anyone_may_enroll_from_the_account_page_and_then_needs_the_code(app, client, make):
    """A police account needs no second factor, may set one up from its account page (same QR page,
    confirmed by a code), and from then on signs in with a code."""
    user = make.user(make.org("police_partner"))
    assert login(client, user.email).status_code == 302 and credential(app, user) is None
    assert 'href="/account/mfa"' in client.get("/account").get_data(as_text=True)
    assert "Off." in client.get("/account/mfa").get_data(as_text=True)
    page = client.get("/account/mfa/enroll").get_data(as_text=True)
    secret = secret_on(page)
    assert secret_on(client.get("/account/mfa/enroll").get_data(as_text=True)) == secret  # a reload keeps it
    wrong = submit_code(client, "/account/mfa/enroll", code_at(secret, -4))
    assert wrong.status_code == 400 and credential(app, user).confirmed_at is None
    done = submit_code(client, "/account/mfa/enroll", totp_code(secret))
    assert done.status_code == 200 and len(recovery_codes_on(done.get_data(as_text=True))) == 10
    assert "On: signing in takes" in client.get("/account/mfa").get_data(as_text=True)
    assert client.get("/account/mfa/enroll").location == "/account/mfa"  # never over a confirmed one

    other = app.test_client()
    assert password_step(other, user.email).location == "/login/code"
    assert submit_code(other, "/login/code", second_factor_code(app, user.email)).location == "/"


def test_the_secret_is_sealed_at_rest_bound_to_its_user_and_rotates_with_the_key_ring(app, make):
    """The stored row holds no trace of the secret; moved to another user's row it does not open;
    `portal keys rotate` re-wraps it under the new key and it still opens."""
    alice, bob = make.user(make.org(), mfa=False), make.user(make.org(), mfa=False)
    secret = make.enroll(alice)
    make.enroll(bob)
    ring = app.extensions["portal.keyring"]
    with app.app_context():
        db = get_session()
        row = db.get(UserMfa, alice.id)
        for blob in (row.secret_enc, row.wrapped_key):
            assert secret.encode() not in blob and base64.b32decode(secret) not in blob
        stolen = db.get(UserMfa, bob.id)
        stolen.kek_id, stolen.wrapped_key, stolen.secret_enc = row.kek_id, row.wrapped_key, row.secret_enc
        with pytest.raises(DecryptionError):
            mfa.secret_of(db, ring, db.get(User, bob.id))
        db.rollback()

        new_ring = parse_keyring(generate_key_entry("new2") + "\n" + KEK)
        assert mfa.rotate_keys(db, new_ring) == 2
        db.commit()
        assert db.get(UserMfa, alice.id).kek_id == "new2"
        assert mfa.secret_of(db, new_ring, db.get(User, alice.id)) == secret
        assert mfa.rotate_keys(db, new_ring) == 0


# -- the code step of sign-in ---------------------------------------------------------------------
def test_the_code_opens_the_session_and_the_flask_session_is_rotated(app, client, make):
    """Between the factors the cookie holds only the pending marker (user id, time), no signed-in
    session; after the code the marker is gone, a session row exists and the CSRF token is new."""
    user = make.user(make.org("service_provider"))
    assert password_step(client, user.email).location == "/login/code"
    with client.session_transaction() as session:
        assert set(session) <= {"pending_login", "csrf_token", "_flashes"} and "_user_id" not in session
        assert session["pending_login"]["user"] == str(user.id)
    assert sessions_of(app, user) == [] and not signed_in(client)
    page = client.get("/login/code")
    assert page.status_code == 200 and 'name="code"' in page.get_data(as_text=True)
    with client.session_transaction() as session:
        before = session["csrf_token"]
    done = submit_code(client, "/login/code", second_factor_code(app, user.email))
    assert done.status_code == 302 and done.location == "/"
    with client.session_transaction() as session:
        assert "pending_login" not in session and session["_user_id"] and session.get("csrf_token") != before
    [row] = sessions_of(app, user)
    assert row.mfa_verified_at is not None and signed_in(client)


@pytest.mark.parametrize("offset", [-3, -2, 2, 3], ids=lambda o: f"step{o:+d}")
def test_a_code_outside_the_window_is_refused(app, client, make, offset):
    """A code for a time step two or more away from now (an old, expired code, or one from a fast
    clock) is refused like a wrong one, and uses up nothing."""
    user = make.user(make.org("cvi_team"), mfa=False)
    secret = make.enroll(user)
    password_step(client, user.email)
    response = submit_code(client, "/login/code", code_at(secret, offset))
    assert response.status_code == 401 and WRONG in response.get_data(as_text=True)
    assert sessions_of(app, user) == [] and credential(app, user).last_used_step is None
    assert submit_code(client, "/login/code", totp_code(secret)).status_code == 302  # the marker still holds


@pytest.mark.parametrize("code", ["000000", "12345", "1234567", "abc", "x" * 64, "’’’’’’"])
def test_a_wrong_code_is_refused_and_says_so_without_echoing_it(app, client, make, code):
    user = make.user(make.org("cvi_team"))
    secret_code = second_factor_code(app, user.email)
    if code == "000000" and secret_code == code:
        code = "999999"
    password_step(client, user.email)
    response = submit_code(client, "/login/code", code)
    body = response.get_data(as_text=True)
    assert response.status_code == 401 and WRONG in body and f'value="{code}"' not in body
    assert sessions_of(app, user) == [] and not signed_in(client)


def test_an_empty_code_is_a_form_error(app, client, make):
    user = make.user(make.org("cvi_team"))
    password_step(client, user.email)
    response = submit_code(client, "/login/code", "")
    assert response.status_code == 400 and "Enter the code." in response.get_data(as_text=True)


def test_a_used_code_cannot_be_replayed_nor_an_earlier_one_used(app, make, caplog):
    """Once a time step's code is accepted, that code and every earlier step's code are refused,
    even inside the window (the next sign-in needs a newer code)."""
    user = make.user(make.org("cvi_team"), mfa=False)
    secret = make.enroll(user)
    first, again, earlier = app.test_client(), app.test_client(), app.test_client()
    seconds_left = mfa.STEP_SECONDS - time.time() % mfa.STEP_SECONDS
    if seconds_left < 5:  # keep now - 1 inside the window throughout
        time.sleep(seconds_left + 0.1)
    now = int(time.time()) // mfa.STEP_SECONDS
    password_step(first, user.email)
    assert submit_code(first, "/login/code", pyotp.TOTP(secret).generate_otp(now)).status_code == 302
    assert credential(app, user).last_used_step == now
    with caplog.at_level("INFO", logger="portal.auth"):
        password_step(again, user.email)
        replay = submit_code(again, "/login/code", pyotp.TOTP(secret).generate_otp(now))
        password_step(earlier, user.email)
        older = submit_code(earlier, "/login/code", pyotp.TOTP(secret).generate_otp(now - 1))
    assert replay.status_code == older.status_code == 401 and WRONG in replay.get_data(as_text=True)
    assert caplog.text.count(f"login code refused user={user.id} outcome=replayed") == 2
    assert not signed_in(again) and not signed_in(earlier) and len(sessions_of(app, user)) == 1
    assert submit_code(again, "/login/code", pyotp.TOTP(secret).generate_otp(now + 1)).status_code == 302


def test_a_recovery_code_signs_in_once(app, make):
    """Each recovery code replaces the TOTP code once (typed with or without its dash, in any case);
    the second use is refused."""
    user = make.user(make.org("hospital_program"), mfa=False)
    client = app.test_client()
    password_step(client, user.email)
    secret = secret_on(client.get("/login/enroll").get_data(as_text=True))
    codes = recovery_codes_on(submit_code(client, "/login/enroll", totp_code(secret)).get_data(as_text=True))

    lost_phone = app.test_client()
    password_step(lost_phone, user.email)
    used = submit_code(lost_phone, "/login/code", codes[3].replace("-", " ").upper())
    home = lost_phone.get("/")
    assert used.status_code == 302 and home.status_code == 200
    assert "a recovery code; 9 left" in home.get_data(as_text=True)

    thief = app.test_client()
    password_step(thief, user.email)
    reused = submit_code(thief, "/login/code", codes[3])
    assert reused.status_code == 401 and WRONG in reused.get_data(as_text=True) and not signed_in(thief)
    with app.app_context():
        spent = get_session().scalar(select(func.count()).select_from(RecoveryCode)
                                     .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_not(None)))
    assert spent == 1
    assert submit_code(thief, "/login/code", codes[4]).status_code == 302  # another, unused one works


def test_an_expired_pending_login_goes_back_to_the_password(app, client, make):
    """Five minutes after the password the marker is worthless: the code page sends the browser back
    to the password form with the reason, and even a valid code opens nothing (nor is it used up)."""
    user = make.user(make.org("cvi_team"))
    password_step(client, user.email)
    token = csrf_token(client, "/login/code")
    with client.session_transaction() as session:
        marker = dict(session["pending_login"])
        marker["at"] -= flow.PENDING_SECONDS + 1
        session["pending_login"] = marker
    response = client.post("/login/code", data={"code": second_factor_code(app, user.email), "csrf_token": token})
    assert response.status_code == 303 and response.location == "/login"
    assert sessions_of(app, user) == [] and credential(app, user).last_used_step is None
    assert "That sign-in took too long" in client.get("/login").get_data(as_text=True)
    assert client.get("/login/code").location == "/login"  # and the marker is gone


def test_the_code_step_without_the_password_step_opens_nothing(app, client, make):
    """Someone who holds the authenticator (a stolen phone) but not the password: the code page
    without a pending login sends them to the password form, and a valid code posted there anyway
    opens no session and uses up nothing."""
    victim = make.user(make.org("cvi_team"))
    page = client.get("/login/code")
    assert page.status_code == 303 and page.location == "/login"
    assert "Enter your e-mail and password first." in client.get("/login").get_data(as_text=True)
    response = client.post("/login/code", data={"code": second_factor_code(app, victim.email),
                                                "csrf_token": csrf_token(client, "/login")})
    assert response.status_code == 303 and response.location == "/login"
    assert sessions_of(app, victim) == [] and credential(app, victim).last_used_step is None
    assert not signed_in(client)


def test_a_forged_pending_marker_is_worthless(app, client, make):
    """A cookie naming the victim as pending, signed with any key but the portal's, is no pending login."""
    victim = make.user(make.org("cvi_team"))
    forger = Flask("forger")
    forger.secret_key = "not the portal's secret"
    cookie = SecureCookieSessionInterface().get_signing_serializer(forger).dumps(
        {"pending_login": {"user": str(victim.id), "at": int(time.time()), "next": None}})
    client.set_cookie("portal_session", cookie)
    page = client.get("/login/code")
    assert page.status_code == 303 and page.location == "/login"
    client.set_cookie("portal_session", cookie)
    posted = client.post("/login/code", data={"code": second_factor_code(app, victim.email)})
    assert posted.status_code in (303, 400) and sessions_of(app, victim) == []
    assert credential(app, victim).last_used_step is None


def test_ones_own_password_and_the_victims_code_open_nothing(app, make):
    """The code is checked against the account whose password was given: an attacker's own pending
    login with the victim's current code is refused, for either account."""
    attacker, victim = make.user(make.org("cvi_team")), make.user(make.org("cvi_team"))
    client = app.test_client()
    password_step(client, attacker.email)
    response = submit_code(client, "/login/code", second_factor_code(app, victim.email))
    assert response.status_code == 401 and sessions_of(app, attacker) == sessions_of(app, victim) == []
    assert credential(app, victim).last_used_step is None


def test_a_visitor_cannot_reach_enrollment_for_someone_else(app, client, make):
    """Signed out, no enrollment page works: the account pages send to /login, the login-time one
    needs a pending login; and a pending login of an account that has a factor (the attacker knows
    only the password) is sent to the code step, never shown a new secret to replace the old one."""
    victim = make.user(make.org("cvi_team"))
    before = credential(app, victim).secret_enc
    for path in ("/account/mfa", "/account/mfa/enroll"):
        response = client.get(path)
        assert response.status_code == 302 and response.location.startswith("/login"), path
    assert client.get("/login/enroll").location == "/login"
    token = csrf_token(client, "/login")
    for path in ("/login/enroll", "/account/mfa/enroll", "/account/mfa/remove", "/account/mfa/recovery-codes"):
        response = client.post(path, data={"code": "123456", "csrf_token": token})
        assert response.status_code in (302, 303) and response.location.startswith("/login"), path
    password_step(client, victim.email)
    for method in (client.get, client.post):
        response = method("/login/enroll", data={"code": "123456", "csrf_token": csrf_token(client, "/login/code")})
        assert response.status_code == 302 and response.location == "/login/code"
    row = credential(app, victim)
    assert row.secret_enc == before and row.confirmed_at is not None
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(UserMfa)) == 1


def test_deactivation_between_the_password_and_the_code_opens_nothing(app, client, make):
    user = make.user(make.org("cvi_team"))
    password_step(client, user.email)
    token = csrf_token(client, "/login/code")
    with app.app_context():
        db = get_session()
        db.get(User, user.id).active = False
        db.commit()
    response = client.post("/login/code", data={"code": second_factor_code(app, user.email), "csrf_token": token})
    assert response.status_code == 303 and sessions_of(app, user) == []


def test_the_code_step_keeps_where_the_user_was_going_but_never_off_site(app, make):
    user = make.user(make.org("cvi_team"))
    for target, expected in (("/account", "/account"), ("//evil.test/x", "/")):
        client = app.test_client()
        password_step(client, user.email, next=target)
        with client.session_transaction() as session:  # even a marker edited by the server's own hand
            marker = dict(session["pending_login"])
            marker["next"] = target
            session["pending_login"] = marker
        assert submit_code(client, "/login/code", second_factor_code(app, user.email)).location == expected


def test_code_failures_are_logged_by_id_without_code_or_email(app, client, make, caplog):
    user = make.user(make.org("cvi_team"))
    password_step(client, user.email)
    with caplog.at_level("DEBUG"):
        submit_code(client, "/login/code", "314159")
    assert f"login code refused user={user.id} outcome=wrong" in caplog.text
    assert "314159" not in caplog.text and user.email not in caplog.text


# -- the account's second factor ------------------------------------------------------------------
def test_new_recovery_codes_need_a_code_and_replace_the_old_ones(app, client, make):
    user = make.user(make.org("cvi_team"), mfa=False)
    secret = make.enroll(user)
    with app.app_context():
        db = get_session()
        old = mfa.new_recovery_codes(db, db.get(User, user.id))
        db.commit()
    login(client, user.email)
    token = csrf_token(client, "/account/mfa")
    refused = client.post("/account/mfa/recovery-codes", data={"code": "000001", "csrf_token": token})
    assert refused.status_code == 400 and WRONG in refused.get_data(as_text=True)
    made = client.post("/account/mfa/recovery-codes", data={"code": totp_code(secret, credential(app, user)
                                                                                 .last_used_step),
                                                             "csrf_token": token})
    new = recovery_codes_on(made.get_data(as_text=True))
    assert made.status_code == 200 and len(new) == 10 and not set(new) & set(old)
    other = app.test_client()
    password_step(other, user.email)
    assert submit_code(other, "/login/code", old[0]).status_code == 401
    assert submit_code(other, "/login/code", new[0]).status_code == 302


def test_removing_the_factor_needs_a_code_and_a_required_account_sets_up_a_new_one(app, make):
    """Wrong code: nothing removed. Right code: removed; a police staff account then signs in with
    the password alone, a CVI account is sent straight to set up its new authenticator."""
    for kind, then in (("police_partner", "/account/mfa"), ("cvi_team", "/account/mfa/enroll")):
        user = make.user(make.org(kind), mfa=True)
        client = app.test_client()
        login(client, user.email)
        token = csrf_token(client, "/account/mfa")
        refused = client.post("/account/mfa/remove", data={"code": "000001", "csrf_token": token})
        assert refused.status_code == 400 and credential(app, user) is not None
        removed = client.post("/account/mfa/remove", data={"code": second_factor_code(app, user.email),
                                                           "csrf_token": token})
        assert removed.status_code == 303 and removed.location == then and credential(app, user) is None
        expected = "/" if kind == "police_partner" else "/login/enroll"
        assert password_step(app.test_client(), user.email).location == expected


# -- step-up before exports -----------------------------------------------------------------------
def test_an_export_needs_a_code_from_the_last_five_minutes(app, client, make):
    """Right after sign-in (the code was just typed) the CSV comes; five minutes later the export
    goes to the step-up page with the `code` field, and back to the same URL once a code is given."""
    user = make.user(make.org("city_office"), "org_admin")
    login(client, user.email)
    first = client.get(EXPORT, query_string={"period": "month"})
    assert first.status_code == 200 and first.mimetype == "text/csv"
    age_step_up(app, user, 6)
    stale = client.get(EXPORT, query_string={"period": "month"})
    assert stale.status_code == 302 and stale.location.startswith("/step-up?next=")
    page = client.get(stale.location)
    assert page.status_code == 200 and 'name="code"' in page.get_data(as_text=True)
    token = CSRF_META.search(page.get_data(as_text=True)).group(1)
    wrong = client.post(stale.location, data={"code": "000001", "csrf_token": token})
    assert wrong.status_code == 401 and client.get(EXPORT).status_code == 302
    done = client.post(stale.location, data={"code": second_factor_code(app, user.email), "csrf_token": token})
    assert done.status_code == 303 and done.location == f"{EXPORT}?period=month"
    again = client.get(done.location)
    assert again.status_code == 200 and again.mimetype == "text/csv"
    [row] = sessions_of(app, user)
    assert utcnow() - row.mfa_verified_at < timedelta(seconds=30)


def test_htmx_is_told_where_the_step_up_is(app, client, make):
    user = make.user(make.org("city_office"), "org_admin")
    login(client, user.email)
    age_step_up(app, user, 6)
    response = client.get(EXPORT, headers={"HX-Request": "true"})
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/step-up?next=")
    assert response.get_data() == b""


def test_an_account_without_a_second_factor_sets_one_up_before_exporting(app, client, make):
    """City staff need no second factor to sign in, but an export sends them to set one up; the
    confirming code counts as the step-up and the page of recovery codes leads back to the export."""
    user = make.user(make.org("city_office"))
    login(client, user.email)
    step_up = client.get(EXPORT)
    assert step_up.location.startswith("/step-up")
    enroll = client.get(step_up.location)
    assert enroll.status_code == 302 and enroll.location.startswith("/account/mfa/enroll?next=")
    page = client.get(enroll.location).get_data(as_text=True)
    done = client.post(enroll.location, data={"code": totp_code(secret_on(page)),
                                              "csrf_token": CSRF_META.search(page).group(1)})
    assert done.status_code == 200 and f'href="{EXPORT}"' in done.get_data(as_text=True)
    assert client.get(EXPORT).mimetype == "text/csv"


def test_a_police_users_export_still_needs_the_step_up(app, client, make):
    """The step-up comes before the policy decision: a police account asking for an export is sent
    to set up and prove a second factor like anyone, and only then refused by the policy; no CSV."""
    user = make.user(make.org("police_partner"))
    login(client, user.email)
    response = client.get(EXPORT)
    assert response.status_code == 302 and response.location.startswith("/step-up")
    assert client.get(response.location).location.startswith("/account/mfa/enroll")
    make.enroll(user)
    response = client.get(EXPORT)
    assert response.status_code == 302 and response.location.startswith("/step-up")
    token = csrf_token(client, response.location)
    done = client.post(response.location, data={"code": second_factor_code(app, user.email), "csrf_token": token})
    assert done.status_code == 303 and done.location == EXPORT
    refused = client.get(EXPORT)
    assert refused.status_code == 403 and refused.mimetype != "text/csv"


def test_the_step_up_returns_only_to_this_site(app, client, make):
    user = make.user(make.org("city_office"), "org_admin")
    login(client, user.email)
    token = csrf_token(client, "/step-up")
    response = client.post("/step-up?next=//evil.test/x", data={"code": second_factor_code(app, user.email),
                                                                "csrf_token": token})
    assert response.status_code == 303 and response.location == "/"


def test_every_csv_endpoint_is_behind_the_step_up(app):
    """Every view that answers text/csv carries the step-up, read from the views themselves, so an
    export added tomorrow without it fails here."""
    import inspect

    from portal.auth.step_up import needs_step_up
    exports = [name for name, view in app.view_functions.items()
               if "text/csv" in inspect.getsource(inspect.unwrap(view))]
    assert "dashboards.export" in exports
    assert [name for name in exports if not needs_step_up(app.view_functions[name])] == []


# -- the demo -------------------------------------------------------------------------------------
def test_the_demo_totp_secret_is_refused_in_production(tmp_path):
    """PORTAL_DEMO_TOTP_SECRET in production stops the portal at start-up, with one line."""
    environ = {"PORTAL_ENV": "production", "PORTAL_SECRET_KEY": "s" * 40,
               "PORTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite3'}", "PORTAL_KEK": KEK,
               "PORTAL_DEMO_TOTP_SECRET": pyotp.random_base32()}
    with pytest.raises(ConfigError, match="PORTAL_DEMO_TOTP_SECRET is for development only"):
        load_config(environ)
    del environ["PORTAL_DEMO_TOTP_SECRET"]
    assert load_config(environ).production


def test_demo_data_gives_the_demo_accounts_the_demo_secret_and_says_how_to_add_it(run):  # noqa: F811
    """`portal demo-data` with PORTAL_DEMO_TOTP_SECRET enrolls every demo account and prints the
    otpauth URI; a malformed secret is refused; production refuses the variable outright."""
    secret = pyotp.random_base32()
    run("db", "upgrade")
    bad = run("demo-data", PORTAL_DEMO_PASSWORD="demo password 123", PORTAL_DEMO_TOTP_SECRET="not base32!")
    assert bad.returncode == 2 and "must be base32" in bad.stderr
    result = run("demo-data", PORTAL_DEMO_PASSWORD="demo password 123", PORTAL_DEMO_TOTP_SECRET=secret.lower())
    assert result.returncode == 0, result.stderr
    assert "7 demo account(s) given PORTAL_DEMO_TOTP_SECRET" in result.stdout
    assert f"otpauth://totp/Peace%20Portal:demo%20accounts?secret={secret}&issuer=Peace%20Portal" in result.stdout
    again = run("demo-data", PORTAL_DEMO_TOTP_SECRET=secret)
    assert "0 demo account(s) given" in again.stdout
    refused = run("demo-data", PORTAL_ENV="production", PORTAL_DEMO_TOTP_SECRET=secret)
    assert refused.returncode != 0 and "PORTAL_DEMO_TOTP_SECRET is for development only" in refused.stderr
    without = run("demo-data")
    assert "set it up at their first sign-in" in without.stdout


def test_demo_accounts_sign_in_with_the_demo_secret(app):
    """The demo secret really is each demo account's second factor."""
    from portal.demo import enroll_demo_users, load_demo_data
    secret = pyotp.random_base32()
    with app.app_context():
        db = get_session()
        load_demo_data(db, PASSWORD)
        assert len(enroll_demo_users(db, app.extensions["portal.keyring"], secret)) == 7
        db.commit()
    client = app.test_client()
    assert password_step(client, "cvi@demo.test").location == "/login/code"
    assert submit_code(client, "/login/code", totp_code(secret)).location == "/"


def test_an_org_admin_resets_a_lost_second_factor(app, make):
    """Lost phone and lost recovery codes: the org admin resets it, the person's sessions end, and
    the next sign-in sets up a new authenticator. Nobody else can, and never for oneself."""
    from portal.models import AuditEvent
    org = make.org("cvi_team")
    admin, worker = make.user(org, "org_admin"), make.user(org, "staff")
    worker_client = app.test_client()
    assert login(worker_client, worker.email).status_code == 302
    admin_client = app.test_client()
    assert login(admin_client, admin.email).status_code == 302
    page = admin_client.get(f"/admin/organizations/{org.id}").get_data(as_text=True)
    assert f"/admin/users/{worker.id}/second-factor/reset" in page
    assert f"/admin/users/{admin.id}/second-factor/reset" not in page  # not for oneself

    for outsider in (make.user(make.org("cvi_team"), "org_admin"), make.user(make.org("police_partner"), "org_admin")):
        other = app.test_client()
        login(other, outsider.email)
        refused = other.post(f"/admin/users/{worker.id}/second-factor/reset", data={"csrf_token": csrf_token(other, "/")})
        assert refused.status_code == 404
    assert worker_client.get("/").status_code == 200  # nothing happened yet

    token = csrf_token(admin_client, f"/admin/organizations/{org.id}")
    done = admin_client.post(f"/admin/users/{worker.id}/second-factor/reset", data={"csrf_token": token})
    assert done.status_code == 303
    assert admin_client.post(f"/admin/users/{admin.id}/second-factor/reset",
                             data={"csrf_token": token}).status_code == 400
    assert worker_client.get("/").status_code == 302  # the worker's session ended
    with app.app_context():
        db = get_session()
        assert not mfa.is_enrolled(db, db.get(User, worker.id))
        assert db.scalar(select(func.count()).select_from(UserSession).where(UserSession.user_id == worker.id)) == 0
        event = db.scalar(select(AuditEvent).where(AuditEvent.action == "auth.second_factor_reset"))
        assert event.actor_id == admin.id and event.resource_id == str(worker.id)
    again = app.test_client()
    step = again.post("/login", data={"email": worker.email, "password": PASSWORD, "csrf_token": csrf_token(again)})
    assert step.status_code == 302 and step.location.endswith("/login/enroll")
