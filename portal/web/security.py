"""Headers on every response; cookie hardening outside development."""
from __future__ import annotations

from flask import request
from flask_login import current_user

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "object-src 'none'",
])


def init_app(app, config) -> None:
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not config.development and config.env != "test",
        SESSION_COOKIE_NAME="portal_session" if config.development or config.env == "test" else "__Host-portal_session",
        SESSION_COOKIE_PATH="/",
        REMEMBER_COOKIE_DURATION=0,
    )
    if config.production:
        app.config.update(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_NAME="__Host-portal_session")

    @app.after_request
    def _security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers["X-Frame-Options"] = "DENY"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        headers.add("Vary", "HX-Request")
        if not config.development:
            headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        if request.endpoint != "static" and (current_user.is_authenticated or not config.development):
            # Nothing a signed-in user sees may sit in a shared or back-button cache.
            headers["Cache-Control"] = "no-store"
        return response
