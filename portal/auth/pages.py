"""The second-factor pages shared by the login flow and the account pages: enrollment (QR code
and the secret as text) and the one-time list of recovery codes."""
from __future__ import annotations

import segno
from flask import render_template
from markupsafe import Markup

from portal.auth import mfa
from portal.models import User

QR_LABEL = "QR code to scan with your authenticator app"
# A secret or recovery codes on the page: never in a cache, not even in development or signed out.
NO_STORE = {"Cache-Control": "no-store"}


def qr_svg(uri: str) -> Markup:
    """The otpauth URI as an inline SVG QR code (dark on its own light background, so any theme works)."""
    svg = segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff", svgclass="qr")
    # segno writes only numbers and fixed attributes here; the label is ours.
    return Markup(svg.replace("<svg ", f'<svg role="img" aria-label="{QR_LABEL}" ', 1))  # nosec B704 — path geometry and fixed attributes only: the URI is drawn as modules, never written as text


def grouped(secret: str) -> str:
    """The base32 secret in groups of four, easier to type into an app by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def render_enroll(user: User, secret: str, form, action: str, status: int = 200, cancel_url: str | None = None):
    return render_template("auth/mfa_enroll.html", form=form, action=action, cancel_url=cancel_url,
                           qr=qr_svg(mfa.provisioning_uri(secret, user.email)), secret=grouped(secret)), status, NO_STORE


def render_recovery_codes(codes: list[str], continue_url: str, first_time: bool):
    return render_template("auth/mfa_recovery_codes.html", codes=codes, continue_url=continue_url,
                           first_time=first_time), 200, NO_STORE
