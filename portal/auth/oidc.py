"""OpenID Connect relying party: the authorization code flow with PKCE, state and nonce, and full
validation of the ID token, on authlib's OIDC claim rules and joserfc's signature checks.

The issuer is pinned by configuration, never learned: discovery may supply the endpoints, but the
metadata's `issuer` must equal the configured issuer exactly, and so must the ID token's `iss`
and the authorization response's `iss` (RFC 9207, against mix-up). The ID token must be signed
with an asymmetric algorithm by a key from the pinned issuer's JWKS, name this client as its only
audience, carry the nonce of this sign-in, and be current within `LEEWAY` seconds. A token
response without an ID token is a failed sign-in, not an OAuth-only success.

No Flask, no database: callers pass a `Client` and get an `Identity` or an `OidcError` whose `code`
is safe to log (never a claim value, a token or an e-mail address).
"""
from __future__ import annotations

import base64
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urlencode, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidClaimError, InvalidKeyIdError, JoseError, MissingClaimError
from joserfc.jwk import KeySet

LEEWAY = 60  # seconds of clock difference tolerated on exp, iat and nbf
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
SCOPE = "openid email"
TIMEOUT = 10  # seconds for each call to the provider
MAX_BYTES = 256 * 1024
METADATA_TTL = 300  # seconds a provider's metadata and keys are reused
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class OidcError(Exception):
    """A sign-in that must not complete. `code` (and `claim`) are for logs; the user sees neither."""

    def __init__(self, code: str, claim: str | None = None):
        super().__init__(code if claim is None else f"{code}:{claim}")
        self.code = code
        self.claim = claim


@dataclass(frozen=True)
class Client:
    """This portal as a client of one organization's provider."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str = field(repr=False)


@dataclass(frozen=True)
class Identity:
    """Who the provider vouches for: (issuer, subject) always; the e-mail only as the provider has it."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool


def check_url(url: str, allow_http_loopback: bool) -> str | None:
    """Why this URL may not be called (None when it may): https only, plain http on loopback if allowed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL"
    if parts.username or parts.password or parts.fragment or not parts.hostname:
        return "not a plain https URL"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and allow_http_loopback and parts.hostname in LOOPBACK_HOSTS:
        return None
    return "must use https"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A provider's answers are final: following a redirect would call an address nobody configured."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class Directory:
    """Fetches and briefly caches each pinned issuer's metadata and signing keys."""

    def __init__(self, allow_http_loopback: bool = False, ttl: float = METADATA_TTL):
        self.allow_http_loopback = allow_http_loopback
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, object]] = {}
        self._lock = threading.Lock()

    # -- HTTP ----------------------------------------------------------------------------------
    def call(self, url: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
        """GET (or POST a form to) a provider URL; the status and the JSON object it answered."""
        if check_url(url, self.allow_http_loopback):
            raise OidcError("endpoint_not_allowed")
        body = urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, headers={"Accept": "application/json", **(headers or {})})
        try:
            with _OPENER.open(request, timeout=TIMEOUT) as response:
                status, raw = response.status, response.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read(MAX_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError):
            raise OidcError("provider_unreachable") from None
        if len(raw) > MAX_BYTES:
            raise OidcError("response_too_large")
        try:
            document = json.loads(raw)
        except ValueError:
            raise OidcError("response_not_json") from None
        if not isinstance(document, dict):
            raise OidcError("response_not_json")
        return status, document

    def _cached(self, key: tuple[str, str], fetch, force: bool = False):
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit and not force and now - hit[0] < self.ttl:
            return hit[1]
        value = fetch()
        with self._lock:
            self._cache[key] = (now, value)
        return value

    # -- metadata and keys ---------------------------------------------------------------------
    def metadata(self, issuer: str) -> dict:
        """The provider's metadata, only if it names exactly the configured issuer."""
        return self._cached(("metadata", issuer), lambda: self._fetch_metadata(issuer))

    def _fetch_metadata(self, issuer: str) -> dict:
        status, document = self.call(issuer.rstrip("/") + "/.well-known/openid-configuration")
        if status != 200:
            raise OidcError("discovery_failed")
        # OpenID Connect Discovery 1.0 §4.3: identical, not merely equivalent.
        if not isinstance(document.get("issuer"), str) or not hmac.compare_digest(document["issuer"], issuer):
            raise OidcError("discovery_issuer_mismatch")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(name), str) or check_url(document[name], self.allow_http_loopback):
                raise OidcError("discovery_incomplete", name)
        methods = document.get("code_challenge_methods_supported")
        if methods is not None and "S256" not in methods:
            raise OidcError("pkce_unsupported")
        return document

    def keys(self, issuer: str, force: bool = False) -> KeySet:
        jwks_uri = self.metadata(issuer)["jwks_uri"]
        return self._cached(("keys", issuer), lambda: self._fetch_keys(jwks_uri), force=force)

    def _fetch_keys(self, jwks_uri: str) -> KeySet:
        status, document = self.call(jwks_uri)
        if status != 200 or not isinstance(document.get("keys"), list):
            raise OidcError("jwks_failed")
        # Only public signing keys: a shared-secret ("oct") key in a JWKS would let anyone sign.
        public = [k for k in document["keys"] if isinstance(k, dict) and k.get("kty") in ("RSA", "EC", "OKP")
                  and "d" not in k and k.get("use", "sig") == "sig"]
        try:
            return KeySet.import_key_set({"keys": public})
        except (JoseError, ValueError, TypeError):
            raise OidcError("jwks_invalid") from None


# -- the flow ------------------------------------------------------------------------------------
def authorization_request(directory: Directory, client: Client) -> AuthorizationRequest:
    """Where to send the browser: a fresh state, nonce and PKCE (S256) verifier for this sign-in."""
    metadata = directory.metadata(client.issuer)
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    url = add_params_to_uri(metadata["authorization_endpoint"], [
        ("response_type", "code"),
        ("client_id", client.client_id),
        ("redirect_uri", client.redirect_uri),
        ("scope", SCOPE),
        ("state", state),
        ("nonce", nonce),
        ("code_challenge", create_s256_code_challenge(verifier)),
        ("code_challenge_method", "S256"),
    ])
    return AuthorizationRequest(url=url, state=state, nonce=nonce, code_verifier=verifier)


def authorization_code(directory: Directory, client: Client, params: dict) -> str:
    """The code from the provider's answer at the callback, after the RFC 9207 issuer check."""
    metadata = directory.metadata(client.issuer)
    iss = params.get("iss")
    if iss is not None and not hmac.compare_digest(str(iss), client.issuer):
        raise OidcError("response_issuer_mismatch")
    if iss is None and metadata.get("authorization_response_iss_parameter_supported") is True:
        raise OidcError("response_issuer_missing")
    if params.get("error"):
        raise OidcError("provider_error", _safe_code(params["error"]))
    code = params.get("code")
    if not code or len(code) > 2048:
        raise OidcError("no_code")
    return code


def exchange_code(directory: Directory, client: Client, code: str, code_verifier: str) -> dict:
    """The token response (client_secret_basic, with the PKCE verifier); it must hold an ID token."""
    metadata = directory.metadata(client.issuer)
    # RFC 6749 §2.3.1: both parts form-encoded before Basic encoding.
    credentials = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
    status, tokens = directory.call(metadata["token_endpoint"], data={
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": code_verifier,
    }, headers={"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()})
    if status != 200:
        raise OidcError("token_error", _safe_code(tokens.get("error", "http_error")))
    if not isinstance(tokens.get("access_token"), str) or str(tokens.get("token_type", "")).lower() != "bearer":
        raise OidcError("token_response_invalid")
    if not isinstance(tokens.get("id_token"), str):
        raise OidcError("no_id_token")
    return tokens


def validate_id_token(directory: Directory, client: Client, tokens: dict, nonce: str,
                      now: int | None = None) -> dict:
    """The ID token's claims, after every check OpenID Connect Core §3.1.3.7 asks of a client."""
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str):
        raise OidcError("no_id_token")
    token = _verify_signature(directory, client.issuer, id_token)
    claims = CodeIDToken(token.claims, token.header, options={
        "iss": {"essential": True, "value": client.issuer},
        "aud": {"essential": True, "value": client.client_id},
        "sub": {"essential": True},
        "nonce": {"essential": True, "value": nonce},
    }, params={"nonce": nonce, "client_id": client.client_id, "access_token": tokens.get("access_token")})
    try:
        claims.validate(now=now, leeway=LEEWAY)
    except ExpiredTokenError:
        raise OidcError("id_token_claim", "exp") from None
    except (MissingClaimError, InvalidClaimError) as error:
        raise OidcError("id_token_claim", _claim_name(error)) from None
    except JoseError:
        raise OidcError("id_token_claim", "invalid") from None
    # One audience, this client: an ID token also meant for a party we do not know is refused.
    if claims["aud"] not in (client.client_id, [client.client_id]):
        raise OidcError("id_token_claim", "aud")
    subject = claims["sub"]
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise OidcError("id_token_claim", "sub")
    return dict(claims)


def userinfo(directory: Directory, client: Client, access_token: str, subject: str) -> dict:
    """The userinfo claims, only if they are about the ID token's subject (Core §5.3.4)."""
    endpoint = directory.metadata(client.issuer).get("userinfo_endpoint")
    if not isinstance(endpoint, str):
        raise OidcError("no_userinfo_endpoint")
    status, claims = directory.call(endpoint, headers={"Authorization": f"Bearer {access_token}"})
    if status != 200:
        raise OidcError("userinfo_failed")
    if not isinstance(claims.get("sub"), str) or not hmac.compare_digest(claims["sub"], subject):
        raise OidcError("userinfo_subject_mismatch")
    return claims


def identify(directory: Directory, client: Client, params: dict, nonce: str, code_verifier: str) -> Identity:
    """The whole callback: check the answer, exchange the code, validate the ID token, read the e-mail."""
    code = authorization_code(directory, client, params)
    tokens = exchange_code(directory, client, code, code_verifier)
    claims = validate_id_token(directory, client, tokens, nonce)
    if "email" not in claims:
        claims = {**userinfo(directory, client, tokens["access_token"], claims["sub"]), "sub": claims["sub"]}
    email = claims.get("email")
    email = email.strip().lower() if isinstance(email, str) and 3 <= len(email) <= 254 else None
    return Identity(issuer=client.issuer, subject=claims["sub"], email=email,
                    email_verified=claims.get("email_verified") is True)


def _verify_signature(directory: Directory, issuer: str, id_token: str):
    """Decode the JWS with the issuer's keys; fetch them once more when the key id is new (rotation)."""
    for force in (False, True):
        try:
            return jwt.decode(id_token, directory.keys(issuer, force=force), algorithms=list(ALGORITHMS))
        except InvalidKeyIdError:
            if force:
                break
        except (JoseError, ValueError, TypeError):
            break
    raise OidcError("id_token_signature")


def _claim_name(error: MissingClaimError | InvalidClaimError) -> str:
    return _safe_code(getattr(error, "claim", None) or "invalid")


def _safe_code(value) -> str:
    """A provider's error code fit for a log line: short, and only [a-z0-9_,]."""
    text = str(value)[:40].lower()
    return "".join(c for c in text if c.isalnum() or c in "_,") or "unknown"
