"""The text of invitation and password-reset mails: a link and what it is for, nothing else.

No name, no organization, no inviter: whoever reads the mail learns only that an account with
this address is invited or that someone asked to reset its password.
"""
from __future__ import annotations

from email.message import EmailMessage
from urllib.parse import urlencode

from portal.auth import tokens
from portal.crypto import KeyRing
from portal.models import AccountToken, User

# The pages the links open (auth/recovery_views.py routes them).
LINK_PATHS = {tokens.INVITE: "/invitation", tokens.RESET: "/password/reset"}


def link(base_url: str, purpose: str, raw: str) -> str:
    return f"{base_url}{LINK_PATHS[purpose]}?{urlencode({'token': raw})}"


def compose(token: AccountToken, recipient: User, ring: KeyRing, base_url: str, sender: str) -> EmailMessage | None:
    """The mail for this token, or None when its link can no longer be used (nothing to send)."""
    raw = tokens.raw_token(ring, token)
    if raw is None:
        return None
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient.email
    url = link(base_url, token.purpose, raw)
    if token.purpose == tokens.INVITE:
        message["Subject"] = "Peace Portal: you are invited"
        body = ("You have been invited to the Peace Portal. Choose your password here to activate your account:\n"
                f"{url}\n\nThe link works once, within 7 days. If you did not expect this invitation, ignore this "
                "message.\n")
    else:
        message["Subject"] = "Peace Portal: reset your password"
        body = ("Someone asked to reset the password of your Peace Portal account. Choose a new password here:\n"
                f"{url}\n\nThe link works once, within an hour, and signs you out everywhere. If you did not ask, "
                "ignore this message: your password stays as it is.\n")
    message.set_content(body)
    return message
