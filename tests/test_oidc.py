"""Single sign-on against a real OpenID provider (oidc-provider on loopback), on SQLite and PostgreSQL.

Every refusal is produced with real providers -- a second client, a misbehaving instance, a hostile
instance with its own keys on another port -- and must be refused by the portal's own checks: each
test asserts the portal's answer, the reason code it logged, and that no session was opened and no
identity linked.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
import subprocess
import sys
import uuid
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import create_engine, func, select, text, update

from portal.auth import oidc, sso
from portal.config import ROOT
from portal.crypto import parse_keyring
from portal.db import get_session, utcnow
from portal.errors import ServiceError
from portal.models import IdentityProvider, LinkedIdentity, PendingSsoLogin, User, UserSession
from tests.conftest import KEK, SECRET, csrf_token, login
from tests.oidc_fixtures import ClientSpec, IdpUser, ProviderFactory, path_and_query, query

DOMAIN = "city.test"
CLIENT_SECRET = "portal-a-secret-" + "s" * 32


@pytest.fixture
def providers(tmp_path):
    factory = ProviderFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def callback(app) -> str:
    return app.config["PORTAL"].base_url + "/sso/callback"


@pytest.fixture
def clients(callback):
    """The portal's client; another party's client on the same provider; one registered for HS256 tokens."""
    return {
        "a": ClientSpec("portal-a", CLIENT_SECRET, (callback,)),
        "b": ClientSpec("other-app", "other-app-secret-" + "o" * 32, (callback,)),
        "hs": ClientSpec("portal-hs", "portal-hs-secret-" + "h" * 32, (callback,),
                         {"id_token_signed_response_alg": "HS256"}),
    }


@pytest.fixture
def idp(providers, clients):
    """The organization's honest provider."""
    return providers.start(list(clients.values()))


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO, logger="portal.auth")
    return caplog


@pytest.fixture
def world(app, make, idp, clients):
    """A city office using `idp`, and a provisioned staff account (city_office staff: no second factor)."""
    org = make.org("city_office")
    user = make.user(org, "staff", email=f"dana@{DOMAIN}")
    configure(app, org, idp.issuer, clients["a"])
    idp.accounts.add("dana", f"Dana@{DOMAIN}", sub="sub-dana")
    return org, user


def configure(app, org, issuer, client, domains=(DOMAIN,), enabled=True):
    with app.app_context():
        db = get_session()
        provider = sso.configure(db, app.extensions["portal.keyring"], org, issuer, client.client_id,
                                 client.client_secret, list(domains), enabled=enabled, allow_http_loopback=True)
        db.commit()
        return provider.id


def start(client, org, **params) -> str:
    """The portal's redirect to the provider's authorization endpoint."""
    response = client.get(f"/sso/{org.id}" + ("?" + urlencode(params) if params else ""))
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def sign_in(client, org, callback, username="dana", password="idp-password", **params):
    """The whole round trip: portal → provider login → portal callback. The callback's response."""
    back = IdpUser().sign_in(start(client, org, **params), username, password, callback)
    return client.get(path_and_query(back))


def count(app, model, *where) -> int:
    with app.app_context():
        return get_session().scalar(select(func.count()).select_from(model).where(*where))


def assert_refused(response, logs, code, status=401, claim=None):
    """The generic failure page, with the reason only in the log."""
    body = response.get_data(as_text=True)
    assert response.status_code == status, body
    assert "Single sign-on did not complete; ask your administrator." in body
    logged = [r.getMessage() for r in logs.records if r.getMessage().startswith("sso failed")]
    assert logged, "no failure was logged"
    assert f"code={code}" in logged[-1] and (claim is None or f"claim={claim}" in logged[-1]), logged
    assert code not in body  # the reason is for the administrator's log, not the page


def assert_no_session(app, client, user=None):
    assert count(app, UserSession) == 0
    if user is not None:
        assert count(app, LinkedIdentity, LinkedIdentity.user_id == user.id) == 0
    home = client.get("/")
    assert home.status_code == 302 and home.headers["Location"].startswith("/login")


# -- the happy path ------------------------------------------------------------------------------
def test_sso_signs_in_a_provisioned_account_and_links_its_identity(app, client, world, idp, callback, logs):
    """Authorization code flow with PKCE S256, state and nonce; the verified e-mail links (iss, sub)
    to the existing account, and the shared sign-in flow opens a session."""
    org, user = world
    location = start(client, org)
    sent = query(location)
    assert location.startswith(idp.issuer + "/auth?")
    assert sent["response_type"] == "code" and sent["client_id"] == "portal-a" and sent["redirect_uri"] == callback
    assert set(sent["scope"].split()) >= {"openid", "email"} and sent["code_challenge_method"] == "S256"
    assert len(sent["state"]) >= 32 and len(sent["nonce"]) >= 32 and len(sent["code_challenge"]) == 43
    assert count(app, PendingSsoLogin) == 1

    back = IdpUser().sign_in(location, "dana", "idp-password", callback)
    assert query(back)["iss"] == idp.issuer and query(back)["state"] == sent["state"]
    response = client.get(path_and_query(back))

    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200 and "Welcome" in home.get_data(as_text=True)
    with app.app_context():
        db = get_session()
        link = db.scalar(select(LinkedIdentity))
        assert (link.user_id, link.issuer, link.subject) == (user.id, idp.issuer, "sub-dana")
        assert db.get(User, user.id).last_login_at is not None
        assert db.scalar(select(func.count()).select_from(UserSession)) == 1
        assert db.scalar(select(func.count()).select_from(PendingSsoLogin)) == 0
    assert any(f"sso signed in user={user.id}" == r.getMessage() for r in logs.records)
    assert DOMAIN not in logs.text and "dana" not in logs.text.lower()  # ids only, never the e-mail


def test_email_in_the_id_token_is_used_without_userinfo(app, client, make, providers, clients, callback):
    """A provider that puts e-mail claims in the ID token itself (signed) links the same way."""
    provider = providers.start(list(clients.values()), OIDC_CLAIMS_IN_ID_TOKEN="1")
    org = make.org("city_office")
    user = make.user(org, "staff", email=f"ida@{DOMAIN}")
    configure(app, org, provider.issuer, clients["a"])
    provider.accounts.add("ida", f"ida@{DOMAIN}", sub="sub-ida")
    assert sign_in(client, org, callback, username="ida").headers["Location"] == "/"
    with app.app_context():
        assert get_session().scalar(select(LinkedIdentity.user_id).where(LinkedIdentity.subject == "sub-ida")) == user.id


def test_sso_returns_to_the_page_asked_for_and_only_on_this_site(app, client, world, callback):
    """`next` survives the round trip when it is a path here; another site's address is dropped."""
    org, _ = world
    assert sign_in(client, org, callback, next="/account").headers["Location"] == "/account"
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert sign_in(client, org, callback, next="//evil.example/x").headers["Location"] == "/"


def test_an_account_that_needs_a_second_factor_goes_on_to_it(app, client, make, idp, clients, callback):
    """SSO proves only the first factor: a CVI worker continues to the code step (or, before the MFA
    work lands, straight home) -- either way through the shared flow."""
    org = make.org("cvi_team")
    make.user(org, "staff", email=f"kai@{DOMAIN}")
    configure(app, org, idp.issuer, clients["a"])
    idp.accounts.add("kai", f"kai@{DOMAIN}")
    response = sign_in(client, org, callback, username="kai")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path in ("/", "/login/code", "/login/enroll")


# -- the issue's refusals --------------------------------------------------------------------------
def test_id_token_for_another_audience_is_refused(app, client, make, providers, clients, callback, logs):
    """A provider that answers the portal's code with an ID token minted for another client (a real
    token, from the real provider, for its client "other-app") is refused on `aud`."""
    misbehaving = providers.start(list(clients.values()), OIDC_ID_TOKEN_FOR_CLIENT="other-app")
    org = make.org("city_office")
    user = make.user(org, "staff", email=f"dana@{DOMAIN}")
    configure(app, org, misbehaving.issuer, clients["a"])
    misbehaving.accounts.add("dana", f"dana@{DOMAIN}")

    assert_refused(sign_in(client, org, callback), logs, "id_token_claim", claim="aud")
    assert_no_session(app, client, user)


def test_code_from_a_hostile_provider_is_refused(app, client, world, providers, clients, idp, callback, logs):
    """Mix-up: the sign-in goes to the organization's provider, but the answer at the callback comes
    from a second provider (its own keys, another port, the same client registration). The portal
    refuses it on the response's `iss` (RFC 9207); with `iss` stripped, because the pinned issuer
    promises one; and with `iss` forged to the pinned issuer, because the code does not redeem there."""
    org, user = world
    hostile = providers.start(list(clients.values()))
    hostile.accounts.add("dana", f"dana@{DOMAIN}", sub="sub-dana")

    for iss, code in ((hostile.issuer, "response_issuer_mismatch"), (None, "response_issuer_missing"),
                      (idp.issuer, "token_error")):
        location = start(client, org)
        # The same request (state, nonce, PKCE challenge) replayed at the hostile provider.
        at_hostile = hostile.url + "/auth?" + urlsplit(location).query
        answer = query(IdpUser().sign_in(at_hostile, "dana", "idp-password", callback))
        assert answer["iss"] == hostile.issuer and answer["state"] == query(location)["state"]
        answer = {k: v for k, v in answer.items() if k != "iss"} | ({"iss": iss} if iss else {})
        assert_refused(client.get("/sso/callback?" + urlencode(answer)), logs, code)
        assert_no_session(app, client, user)


def test_provider_claiming_another_issuer_is_refused(app, client, world, make, providers, clients, idp, callback,
                                                     logs):
    """A hostile provider on another port whose discovery names the honest issuer, so that its tokens
    would carry iss = the honest issuer and the victim's subject: configured for another
    organization, it is refused at discovery, before anyone is sent to it."""
    _, victim = world
    sign_in(client, world[0], callback)  # the victim's identity (idp, sub-dana) is linked
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    hostile = providers.start(list(clients.values()), OIDC_ISSUER=idp.issuer)
    hostile.accounts.add("mallory", f"dana@{DOMAIN}", sub="sub-dana")
    attacker_org = make.org("city_office")
    configure(app, attacker_org, hostile.url, clients["a"])

    response = client.get(f"/sso/{attacker_org.id}")
    assert_refused(response, logs, "discovery_issuer_mismatch")
    assert count(app, PendingSsoLogin) == 0
    assert_no_session(app, client)


def test_id_token_signed_with_another_providers_key_is_refused(app, providers, idp, clients, callback):
    """An ID token with perfect claims (iss = the pinned issuer, aud = this client, the right nonce)
    but signed by a hostile provider's key fails the signature check against the pinned issuer's
    JWKS; the same token from the honest provider passes (so it is the key that decides)."""
    hostile = providers.start(list(clients.values()), OIDC_ISSUER=idp.issuer)
    for p in (idp, hostile):
        p.accounts.add("dana", f"dana@{DOMAIN}", sub="sub-dana")
    directory = oidc.Directory(allow_http_loopback=True)
    client = oidc.Client(idp.issuer, "portal-a", CLIENT_SECRET, callback)

    honest_tokens, honest_nonce = _direct_code_flow(idp, client, callback)
    assert oidc.validate_id_token(directory, client, honest_tokens, honest_nonce)["sub"] == "sub-dana"
    hostile_tokens, nonce = _direct_code_flow(hostile, client, callback)
    with pytest.raises(oidc.OidcError) as refused:
        oidc.validate_id_token(directory, client, hostile_tokens, nonce)
    assert refused.value.code == "id_token_signature"


def test_id_token_time_is_checked_with_sixty_seconds_of_leeway(app, idp, clients, callback):
    """A real ID token is accepted up to 60 s after its `exp` and refused after; one issued more than
    60 s in the future (a provider clock ahead) is refused."""
    idp.accounts.add("dana", f"dana@{DOMAIN}", sub="sub-dana")
    directory = oidc.Directory(allow_http_loopback=True)
    client = oidc.Client(idp.issuer, "portal-a", CLIENT_SECRET, callback)
    tokens, nonce = _direct_code_flow(idp, client, callback)
    claims = oidc.validate_id_token(directory, client, tokens, nonce)
    assert oidc.LEEWAY == 60
    oidc.validate_id_token(directory, client, tokens, nonce, now=claims["exp"] + 59)
    for now, claim in ((claims["exp"] + 61, "exp"), (claims["iat"] - 61, "iat")):
        with pytest.raises(oidc.OidcError) as refused:
            oidc.validate_id_token(directory, client, tokens, nonce, now=now)
        assert (refused.value.code, refused.value.claim) == ("id_token_claim", claim)
    with pytest.raises(oidc.OidcError) as refused:
        oidc.validate_id_token(directory, client, tokens, "another sign-in's nonce")
    assert refused.value.claim == "nonce"


def test_replayed_state_is_refused(app, client, world, callback, logs):
    """A callback URL used once cannot be used again, even with the cookie from before the sign-in
    (the state is deleted from the database, not just from the cookie)."""
    org, user = world
    location = start(client, org)
    cookie_before = client.get_cookie("portal_session").value
    back = IdpUser().sign_in(location, "dana", "idp-password", callback)
    assert client.get(path_and_query(back)).status_code == 302
    assert count(app, UserSession) == 1

    replay = app.test_client()
    replay.set_cookie("portal_session", cookie_before)
    assert_refused(replay.get(path_and_query(back)), logs, "unknown_state", status=400)
    assert count(app, UserSession) == 1
    assert replay.get("/").status_code == 302


def test_id_token_without_the_nonce_is_refused(app, client, world, callback, logs):
    """The authorization request is altered to drop the nonce (the provider then issues a token
    without one): the portal expects its nonce and refuses."""
    org, user = world
    location = start(client, org)
    without_nonce = location.split("?")[0] + "?" + urlencode({k: v for k, v in query(location).items() if k != "nonce"})
    back = IdpUser().sign_in(without_nonce, "dana", "idp-password", callback)
    assert_refused(client.get(path_and_query(back)), logs, "id_token_claim", claim="nonce")
    assert_no_session(app, client, user)


def test_token_response_without_id_token_is_refused(app, client, world, callback, logs):
    """A plain OAuth answer (the request altered to ask no `openid` scope, so the provider issues an
    access token only) is a failed sign-in, not a success without identity."""
    org, user = world
    location = start(client, org)
    params = {k: v for k, v in query(location).items() if k != "nonce"}
    params["scope"] = "email"
    back = IdpUser().sign_in(location.split("?")[0] + "?" + urlencode(params), "dana", "idp-password", callback)
    assert_refused(client.get(path_and_query(back)), logs, "no_id_token")
    assert_no_session(app, client, user)


def test_symmetric_id_token_is_refused(app, client, make, idp, clients, callback, logs):
    """A provider signing ID tokens with the client secret (HS256) instead of its published keys: refused."""
    org = make.org("city_office")
    user = make.user(org, "staff", email=f"hal@{DOMAIN}")
    configure(app, org, idp.issuer, clients["hs"])
    idp.accounts.add("hal", f"hal@{DOMAIN}")
    assert_refused(sign_in(client, org, callback, username="hal"), logs, "id_token_signature")
    assert_no_session(app, client, user)


def test_email_outside_the_allowed_domains_is_refused(app, client, make, idp, clients, callback, logs):
    """A provisioned account whose verified e-mail is not in an allowed domain is never linked."""
    org = make.org("city_office")
    user = make.user(org, "staff", email="contractor@elsewhere.test")
    configure(app, org, idp.issuer, clients["a"])
    idp.accounts.add("contractor", "contractor@elsewhere.test")
    assert_refused(sign_in(client, org, callback, username="contractor"), logs, "domain_not_allowed")
    assert_no_session(app, client, user)


def test_unverified_email_is_refused(app, client, world, idp, callback, logs):
    """The e-mail links an account only when the provider says it verified it."""
    org, user = world
    idp.accounts.update("dana", email_verified=False)
    assert_refused(sign_in(client, org, callback), logs, "email_not_verified")
    assert_no_session(app, client, user)


def test_person_without_an_account_is_refused(app, client, world, make, idp, clients, callback, logs):
    """Nobody joins an organization by signing in: a verified address in the allowed domain with no
    account in this organization is refused -- also when the address has an account elsewhere."""
    org, _ = world
    idp.accounts.add("newcomer", f"newcomer@{DOMAIN}")
    assert_refused(sign_in(client, org, callback, username="newcomer"), logs, "not_provisioned")
    other = make.user(make.org("cvi_team"), "staff", email=f"elsewhere@{DOMAIN}")
    idp.accounts.add("elsewhere", f"elsewhere@{DOMAIN}")
    assert_refused(sign_in(client, org, callback, username="elsewhere"), logs, "not_provisioned")
    assert_no_session(app, client, other)
    assert count(app, User, User.email == f"newcomer@{DOMAIN}") == 0


def test_deactivated_account_is_refused_before_and_after_linking(app, client, world, callback, logs):
    """A deactivated account is refused whether its identity is linked yet or not; nothing is linked."""
    org, user = world
    _set_active(app, user, False)
    assert_refused(sign_in(client, org, callback), logs, "account_inactive")
    assert_no_session(app, client, user)

    _set_active(app, user, True)
    assert sign_in(client, org, callback).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    _set_active(app, user, False)
    assert_refused(sign_in(client, org, callback), logs, "account_inactive")
    assert count(app, UserSession) == 0


def test_the_link_decides_after_the_first_sign_in(app, client, world, idp, callback, logs):
    """Once linked, (iss, sub) signs the account in even after its e-mail changes at the provider (or
    leaves the allowed domains); and another subject asserting the account's address is refused."""
    org, user = world
    assert sign_in(client, org, callback).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})

    idp.accounts.update("dana", email="dana.renamed@other-domain.test")
    response = sign_in(client, org, callback)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "Welcome" in client.get("/").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})

    idp.accounts.add("impostor", f"dana@{DOMAIN}", sub="sub-impostor")
    assert_refused(sign_in(client, org, callback, username="impostor"), logs, "account_linked_to_other_subject")
    with app.app_context():
        assert [(li.subject, li.user_id) for li in get_session().scalars(select(LinkedIdentity))] == \
            [("sub-dana", user.id)]


def test_callback_without_a_pending_sign_in_is_refused(app, client, world, callback, logs):
    """No state, a state nobody issued, or a real callback carried into another browser: refused with
    400 and no session; the carried state is spent, so the real browser cannot finish either."""
    org, user = world
    assert_refused(client.get("/sso/callback"), logs, "no_pending_state", status=400)
    assert_refused(client.get("/sso/callback?code=abc&state=made-up"), logs, "no_pending_state", status=400)
    start(client, org)  # now this browser has a pending sign-in of its own
    assert_refused(client.get("/sso/callback?code=abc&state=made-up"), logs, "unknown_state", status=400)

    victim, attacker = app.test_client(), app.test_client()
    back = IdpUser().sign_in(start(victim, org), "dana", "idp-password", callback)
    start(attacker, org)
    assert_refused(attacker.get(path_and_query(back)), logs, "other_browser", status=400)
    assert_refused(victim.get(path_and_query(back)), logs, "unknown_state", status=400)
    assert_no_session(app, victim, user)


def test_expired_pending_sign_in_is_refused(app, client, world, callback, logs):
    """A pending sign-in older than ten minutes does not complete."""
    org, user = world
    location = start(client, org)
    with app.app_context():
        db = get_session()
        db.execute(update(PendingSsoLogin).values(created_at=utcnow() - timedelta(minutes=11)))
        db.commit()
    back = IdpUser().sign_in(location, "dana", "idp-password", callback)
    assert_refused(client.get(path_and_query(back)), logs, "state_expired", status=400)
    assert_no_session(app, client, user)


def test_access_denied_at_the_provider_is_handled(app, client, world, idp, callback, logs):
    """The person cancels at the provider: its error answer shows the generic page and spends the state."""
    org, user = world
    back = IdpUser().cancel(start(client, org), callback)
    assert query(back)["error"] == "access_denied"
    assert_refused(client.get(path_and_query(back)), logs, "provider_error", claim="access_denied")
    assert count(app, PendingSsoLogin) == 0
    assert_no_session(app, client, user)


def test_disabled_or_missing_provider_is_refused(app, client, world, idp, clients, callback, logs):
    """No provider, or a disabled one: nobody is sent anywhere; disabling mid-flight stops the callback."""
    org, user = world
    location = start(client, org)
    configure(app, org, idp.issuer, clients["a"], enabled=False)
    back = IdpUser().sign_in(location, "dana", "idp-password", callback)
    assert_refused(client.get(path_and_query(back)), logs, "provider_disabled")
    assert_refused(client.get(f"/sso/{org.id}"), logs, "not_configured", status=404)
    assert_refused(client.get(f"/sso/{uuid.uuid4()}"), logs, "not_configured", status=404)
    assert_no_session(app, client, user)


def test_a_hostile_organizations_provider_cannot_sign_in_another_organizations_account(
        app, client, world, make, providers, clients, callback, logs):
    """Another organization's provider (its own issuer, which it does not lie about) asserting the
    victim's verified address and subject -- even with the victim's domain allowed -- finds no
    account: only the provider's own organization's accounts are candidates, and links are per issuer."""
    _, victim = world
    hostile = providers.start(list(clients.values()))
    hostile.accounts.add("mallory", f"dana@{DOMAIN}", sub="sub-dana")
    attacker_org = make.org("city_office")
    configure(app, attacker_org, hostile.issuer, clients["a"])
    assert_refused(sign_in(client, attacker_org, callback, username="mallory"), logs, "not_provisioned")
    assert_no_session(app, client, victim)


# -- finding one's organization ---------------------------------------------------------------------
def test_work_email_form_lists_the_organizations_for_its_domain(app, client, world, make, idp, clients):
    """The form routes by domain (not by account: it says nothing about who has one); an address
    with no provider gets a clear message; the form needs its CSRF token."""
    org, _ = world
    second = make.org("cvi_team", name="City-run Outreach")
    configure(app, second, idp.issuer, clients["a"])
    token = csrf_token(client, "/sso")

    listed = client.post("/sso", data={"email": f"anyone@{DOMAIN.upper()}", "csrf_token": token})
    body = listed.get_data(as_text=True)
    assert listed.status_code == 200
    assert f'href="/sso/{org.id}"' in body and f'href="/sso/{second.id}"' in body and "City-run Outreach" in body

    unknown = client.post("/sso", data={"email": "someone@nowhere.test", "csrf_token": token})
    assert unknown.status_code == 400 and "Single sign-on is not set up for that address" in unknown.get_data(as_text=True)
    assert client.post("/sso", data={"email": f"anyone@{DOMAIN}"}).status_code == 400  # no CSRF token


def test_login_page_offers_single_sign_on(client):
    body = client.get("/login").get_data(as_text=True)
    assert re.search(r'<a [^>]*href="/sso"[^>]*>Sign in with your organization\'s account</a>', body)


# -- configuration ------------------------------------------------------------------------------------
def test_organization_page_shows_the_configuration_but_never_the_secret(app, client, world, make, idp, callback):
    """The organization's administrator sees issuer, client id, domains, state and how many accounts
    are linked -- read-only, and never the client secret."""
    org, _ = world
    assert sign_in(client, org, callback).status_code == 302
    admin_client = app.test_client()
    admin = make.user(org, "org_admin")
    assert login(admin_client, admin.email).status_code in (200, 302)
    body = admin_client.get(f"/admin/organizations/{org.id}").get_data(as_text=True)
    assert "<h2>Single sign-on</h2>" in body
    assert f"<code>{idp.issuer}</code>" in body and "<code>portal-a</code>" in body and DOMAIN in body
    assert re.search(r"<dt>Accounts linked</dt><dd>1</dd>", body)
    assert CLIENT_SECRET not in body


def test_client_secret_is_sealed_at_rest_and_survives_key_rotation(app, world, database_url):
    """The secret is stored only encrypted under the key ring, bound to its row; after rotation to a
    new key it still opens, and without the old key nothing else needed it."""
    org, _ = world
    engine = create_engine(database_url)
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT client_secret_enc, wrapped_key, kek_id FROM identity_providers")).one()
    engine.dispose()
    assert CLIENT_SECRET.encode() not in bytes(raw[0]) + bytes(raw[1]) and raw[2] == "test1"

    old = parse_keyring(KEK)
    new = parse_keyring("test2:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "," + KEK)
    with app.app_context():
        db = get_session()
        provider = db.scalar(select(IdentityProvider))
        assert sso.client_secret(old, provider) == CLIENT_SECRET
        assert sso.rewrap_secrets(db, new) == 1 and sso.rewrap_secrets(db, new) == 0
        db.commit()
        only_new = parse_keyring(f"test2:{base64.urlsafe_b64encode(new.get('test2')).decode()}")
        assert sso.client_secret(only_new, db.get(IdentityProvider, provider.id)) == CLIENT_SECRET


@pytest.mark.parametrize("issuer,domains,field", [
    ("http://idp.example", [DOMAIN], "issuer"),  # plain http off loopback
    ("https://idp.example", [], "allowed_domains"),
    ("https://idp.example", ["not a domain"], "allowed_domains"),
])
def test_bad_configuration_is_refused(app, make, issuer, domains, field):
    org = make.org("city_office")
    with app.app_context():
        db = get_session()
        with pytest.raises(ServiceError) as refused:
            sso.configure(db, app.extensions["portal.keyring"], org, issuer, "c", "s", domains,
                          allow_http_loopback=True)
        assert refused.value.field == field


def test_cli_configures_single_sign_on_with_the_secret_from_stdin(tmp_path):
    """`portal orgs sso ORG --issuer --client-id --allowed-domain ...` reads the secret from stdin,
    never from an argument, and never prints it."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_ENV="development", PORTAL_DATABASE_URL=url, PORTAL_SECRET_KEY=SECRET,
               PORTAL_INSTANCE_PATH=str(tmp_path / "instance"), PORTAL_KEK=KEK)

    def run(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "portal.cli", *args], input=stdin, capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=120)

    assert run("db", "upgrade").returncode == 0
    assert run("orgs", "create", "--name", "Office of Violence Prevention", "--kind", "city_office").returncode == 0
    args = ("orgs", "sso", "Office of Violence Prevention", "--issuer", "https://login.city.example",
            "--client-id", "peace-portal", "--allowed-domain", "City.Example", "--allowed-domain", "ovp.city.example")
    assert run(*args).returncode == 2  # no secret on stdin
    done = run(*args, stdin="the-client-secret-from-the-idp\n")
    assert done.returncode == 0, done.stderr
    assert "domains city.example, ovp.city.example; enabled" in done.stdout
    assert "the-client-secret-from-the-idp" not in done.stdout + done.stderr
    assert run("orgs", "sso", "No Such Org", "--issuer", "https://x.example", "--client-id", "c",
               "--allowed-domain", "x.example", stdin="s\n").returncode == 2
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT issuer, client_id, enabled, client_secret_enc, kek_id "
                                "FROM identity_providers")).one()
        assert row[:3] == ("https://login.city.example", "peace-portal", 1) and row[4] == "test1"
        assert b"the-client-secret-from-the-idp" not in bytes(row[3])

        # `portal keys rotate` re-wraps the secret's data key under the new current key too.
        env["PORTAL_KEK"] = "test2:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "," + KEK
        rotated = run("keys", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert conn.execute(text("SELECT kek_id FROM identity_providers")).scalar() == "test2"
    engine.dispose()


# -- helpers -------------------------------------------------------------------------------------------
def _set_active(app, user, active: bool) -> None:
    with app.app_context():
        db = get_session()
        db.get(User, user.id).active = active
        db.commit()


def _direct_code_flow(provider, client: oidc.Client, callback: str) -> tuple[dict, str]:
    """A code flow driven by the test itself against `provider` (not through the portal): the token response."""
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    authorize = provider.url + "/auth?" + urlencode({
        "response_type": "code", "client_id": client.client_id, "redirect_uri": callback, "scope": "openid email",
        "state": "s", "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"})
    code = query(IdpUser().sign_in(authorize, "dana", "idp-password", callback))["code"]
    # The honest directory would refuse the hostile provider's discovery; talk to its token endpoint directly.
    status, tokens = oidc.Directory(allow_http_loopback=True).call(
        provider.url + "/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": callback, "code_verifier": verifier},
        headers={"Authorization": "Basic " + base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode()})
    assert status == 200 and "id_token" in tokens, tokens
    return tokens, nonce
