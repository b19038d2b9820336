"""Rate limits (Flask-Limiter) on the doors that take a secret, and on the JSON API.

Per client address, and generous: a whole hospital shares one NAT address, so 60 sign-in attempts
a minute from one address are allowed. Guessing one account's password is stopped by the lockout
(auth/lockout.py), which counts per e-mail address, never per client address, so nobody can lock
a colleague out by failing from the same network. The API counts per account when signed in.

Limits are attached by endpoint name after every blueprint is registered, so views carry no
limiter code; a name that does not exist (a feature not built yet) is skipped. To limit a new
endpoint, add one line to ENDPOINT_LIMITS.

Storage is Redis when PORTAL_REDIS_URL is set (one budget shared by every worker and host), the
process's memory otherwise (development, tests: each app its own, so no test trips another's).
"""
from __future__ import annotations

import ipaddress
import logging
import math
import time

from flask import current_app, make_response, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_login import current_user

log = logging.getLogger("portal.limits")

BY_ADDRESS, BY_ACCOUNT = "address", "account"

# endpoint → (limit, counted per, methods counted; None for all). Skipped when not registered.
ENDPOINT_LIMITS: dict[str, tuple[str, str, list[str] | None]] = {
    "auth.login": ("60 per minute", BY_ADDRESS, ["POST"]),
    "auth.login_code": ("60 per minute", BY_ADDRESS, ["POST"]),   # second factor at sign-in
    "auth.login_enroll": ("60 per minute", BY_ADDRESS, ["POST"]),
    "auth.mfa_enroll": ("10 per minute", BY_ACCOUNT, ["POST"]),   # signed in: codes typed on the account
    "auth.mfa_recovery_codes": ("10 per minute", BY_ACCOUNT, ["POST"]),
    "auth.mfa_remove": ("10 per minute", BY_ACCOUNT, ["POST"]),
    "auth.step_up": ("10 per minute", BY_ACCOUNT, ["POST"]),
    "recovery.forgot": ("20 per minute", BY_ADDRESS, ["POST"]),
    "recovery.invitation": ("60 per minute", BY_ADDRESS, None),   # following a link from a mail
    "recovery.reset": ("60 per minute", BY_ADDRESS, None),
    "recovery.new_password": ("30 per minute", BY_ADDRESS, ["POST"]),
    # A hospital's shift signs in from one address at once; each start writes a pending row.
    "sso.choose": ("60 per minute", BY_ADDRESS, ["POST"]),
    "sso.start": ("120 per minute", BY_ADDRESS, None),
    "sso.callback": ("120 per minute", BY_ADDRESS, None),
}
API_PREFIX = "/api/"
# One budget for the whole API. Signed in it is the account's own, whatever network it comes from.
# 20 calls a second on average: far beyond a person, room for an integration's sync (and for the
# ~750 calls of a signed-in crawl of every API route in tests/test_crawl.py).
API_LIMIT = "1200 per minute"


def init_app(app) -> Limiter:
    """Create this app's limiter and attach the limits. Call after all blueprints are registered."""
    settings = app.config["PORTAL"]
    limiter = Limiter(
        key_func=address_key,
        storage_uri=settings.redis_url or "memory://",
        # A Redis outage must not lock everyone out: each process counts in memory meanwhile.
        in_memory_fallback_enabled=bool(settings.redis_url),
        key_prefix=app.config.get("RATELIMIT_KEY_PREFIX", "portal"),  # tests give each Redis run its own
        strategy="fixed-window",
        headers_enabled=False,  # Retry-After goes on the 429 only (see _too_many)
    )
    limiter.init_app(app)
    app.extensions["portal.limiter"] = limiter

    for endpoint, (limit, per, methods) in ENDPOINT_LIMITS.items():
        if endpoint in app.view_functions:
            key = address_key if per == BY_ADDRESS else account_key
            app.view_functions[endpoint] = limiter.limit(limit, key_func=key, methods=methods)(
                app.view_functions[endpoint])
    api = limiter.shared_limit(API_LIMIT, scope="api", key_func=account_key)
    for endpoint in sorted({rule.endpoint for rule in app.url_map.iter_rules() if rule.rule.startswith(API_PREFIX)}):
        app.view_functions[endpoint] = api(app.view_functions[endpoint])

    app.register_error_handler(RateLimitExceeded, _too_many)
    return limiter


def client_address() -> str:
    """The client's address: the socket's peer, or the entry the last trusted proxy appended.

    Only the rightmost PORTAL_TRUSTED_PROXIES entries of X-Forwarded-For were written by our own
    proxies; anything left of them is whatever the client chose to send, so it is never read.
    An IPv6 client owns a whole /64, so it counts as one address.
    """
    address = request.remote_addr or ""
    trusted = current_app.config["PORTAL"].trusted_proxies
    if trusted:
        forwarded = [part.strip() for value in request.headers.getlist("X-Forwarded-For")
                     for part in value.split(",") if part.strip()]
        if len(forwarded) >= trusted:
            address = forwarded[-trusted]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return request.remote_addr or "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped:  # ::ffff:a.b.c.d is the IPv4 client a.b.c.d
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def address_key() -> str:
    return "addr:" + client_address()


def account_key() -> str:
    """The signed-in account (its own budget, whoever shares its network), else the address."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return address_key()


def _too_many(error: RateLimitExceeded):
    """429 as a page or RFC 9457 problem details, with Retry-After in seconds (RFC 9110 10.2.3)."""
    from portal.web.errors import render_error

    limit = current_app.extensions["portal.limiter"].current_limit
    # reset_at is rounded up to the next whole second; never promise more than the window itself.
    wait = max(1, min(math.ceil(limit.reset_at - time.time()), limit.limit.get_expiry())) if limit else 60
    log.info("rate limited endpoint=%s", request.endpoint)  # never the address or the account's e-mail
    response = make_response(render_error(429, f"Too many requests in a short time. Please wait {_duration(wait)} "
                                               "and try again."))
    response.headers["Retry-After"] = str(wait)
    return response


def _duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
