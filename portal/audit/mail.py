"""Hand a signed checkpoint to the witness by e-mail: the copy that lives outside the database."""
from __future__ import annotations

import smtplib
from email.message import EmailMessage

from portal.notify import smtp_connection


class WitnessMailError(Exception):
    pass


def send_checkpoint(config, address: str, signed_text: str, size: int) -> None:
    """Send now (not through the outbox, which lives in the database the witness guards against)."""
    smtp = config.smtp
    if not smtp["host"]:
        raise WitnessMailError("PORTAL_SMTP_HOST is not set")
    message = EmailMessage()
    message["From"] = config.mail_from
    message["To"] = address
    message["Subject"] = f"Peace Portal audit checkpoint: {size} events"
    message.set_content("The signed checkpoint of the Peace Portal's audit log is attached. Keep it: "
                        "`portal audit verify --checkpoint FILE` proves later that the log still extends it.\n\n"
                        + signed_text)
    message.add_attachment(signed_text.encode("utf-8"), maintype="text", subtype="plain",
                           filename=f"audit-checkpoint-{size}.txt")
    try:
        with smtp_connection(smtp) as server:
            server.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        raise WitnessMailError(f"mail server refused or unreachable ({type(error).__name__})") from None
