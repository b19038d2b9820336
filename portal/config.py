"""Settings from PORTAL_* environment variables: an explicit list of keys with defaults.

Development runs on an embedded SQLite file and a secret generated once under instance/.
Production refuses to start without its required keys, and an unknown PORTAL_* key is an
error (a misspelled setting must not silently fall back to a default).
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

ENVIRONMENTS = ("development", "test", "production")

# Keys read elsewhere (CLI, tests) that the app itself does not use but must not reject.
_KNOWN_ELSEWHERE = {"PORTAL_DEMO_PASSWORD", "PORTAL_DEMO_TOTP_SECRET"}
_TEST_PREFIX = "PORTAL_TEST_"


class ConfigError(Exception):
    """The settings cannot run the portal; the message is one line for the operator."""


@dataclass(frozen=True)
class Setting:
    key: str
    default: str | None = None
    required_in_production: bool = False
    help: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting("PORTAL_ENV", "development", help="development | test | production"),
    Setting("PORTAL_SECRET_KEY", None, True, "signs session cookies and CSRF tokens"),
    Setting("PORTAL_DATABASE_URL", None, True, "SQLAlchemy URL; SQLite file under instance/ by default"),
    Setting("PORTAL_INSTANCE_PATH", None, help="folder for the SQLite file and development secrets"),
    Setting("PORTAL_KEK", None, help="key-encryption keys 'id:base64' (current first); or PORTAL_KEK_FILE"),
    Setting("PORTAL_KEK_FILE", None, help="file holding the key-encryption keys, one 'id:base64' per line"),
    Setting("PORTAL_RETENTION_DAYS", "180", help="personal fields of closed referrals are purged after this"),
    Setting("PORTAL_MFA_REQUIRED_KINDS", "hospital_program,cvi_team,service_provider",
            help="organization kinds whose every account must use a second factor (admins always must)"),
    Setting("PORTAL_BASE_URL", "http://127.0.0.1:5000", help="the portal's address, for links in e-mail"),
    Setting("PORTAL_SMTP_HOST", None, help="mail server; without it notifications wait in the outbox"),
    Setting("PORTAL_SMTP_PORT", "25"),
    Setting("PORTAL_SMTP_USERNAME", None),
    Setting("PORTAL_SMTP_PASSWORD", None),
    Setting("PORTAL_SMTP_STARTTLS", "false", help="true to upgrade the SMTP connection with STARTTLS"),
    Setting("PORTAL_MAIL_FROM", "peace-portal@localhost"),
    Setting("PORTAL_POLICY_DIR", None, help="folder of Cedar schema and policies; policies/ by default"),
    Setting("PORTAL_SESSION_IDLE_MINUTES", "15", help="a signed-in session ends after this much inactivity"),
    Setting("PORTAL_SESSION_MAX_HOURS", "12", help="a signed-in session ends this long after login"),
    Setting("PORTAL_LOG_LEVEL", "INFO"),
    Setting("PORTAL_AUDIT_KEY_FILE", None, help="Ed25519 key that signs audit checkpoints (CLI only; never "
            "in the database); generated under instance/ outside production"),
    Setting("PORTAL_AUDIT_WITNESS_EMAIL", None, help="who receives each signed audit checkpoint "
            "(the city's compliance officer)"),
    Setting("PORTAL_REDIS_URL", None, help="redis://host:port/db for rate limits shared by workers; memory otherwise"),
    Setting("PORTAL_TRUSTED_PROXIES", "0", help="reverse proxies in front that append X-Forwarded-For"),
)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class PortalConfig:
    env: str
    secret_key: str
    database_url: str
    instance_path: Path
    policy_dir: Path
    session_idle_minutes: int
    session_max_hours: int
    mfa_required_kinds: tuple[str, ...]
    log_level: str
    kek: str | None
    kek_file: str | None
    retention_days: int
    base_url: str
    smtp: dict
    mail_from: str
    audit_key_file: str | None = None
    audit_witness_email: str | None = None
    redis_url: str | None = None
    trusted_proxies: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def development(self) -> bool:
        return self.env == "development"


def load(environ: dict[str, str] | None = None, overrides: dict | None = None) -> PortalConfig:
    """Read and validate settings. `overrides` (from tests) win over the environment."""
    environ = dict(os.environ if environ is None else environ)
    overrides = dict(overrides or {})
    values = {s.key: environ.get(s.key, s.default) for s in SETTINGS}
    for key, value in list(overrides.items()):
        if key in values:
            values[key] = value
            overrides.pop(key)

    known = {s.key for s in SETTINGS} | _KNOWN_ELSEWHERE
    unknown = sorted(k for k in environ if k.startswith("PORTAL_") and k not in known
                     and not k.startswith(_TEST_PREFIX))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")

    env = values["PORTAL_ENV"]
    if env not in ENVIRONMENTS:
        raise ConfigError(f"PORTAL_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    if env == "production":
        missing = [s.key for s in SETTINGS if s.required_in_production and not values[s.key]]
        if missing:
            raise ConfigError(f"production requires {', '.join(missing)}")
        if len(values["PORTAL_SECRET_KEY"]) < 32:
            raise ConfigError("PORTAL_SECRET_KEY must be at least 32 characters")
        if environ.get("PORTAL_DEMO_TOTP_SECRET") or overrides.get("PORTAL_DEMO_TOTP_SECRET"):
            # A second factor whose secret sits in the environment (and the README) is no factor.
            raise ConfigError("PORTAL_DEMO_TOTP_SECRET is for development only; unset it in production")

    instance = Path(values["PORTAL_INSTANCE_PATH"] or ROOT / "instance")
    secret = values["PORTAL_SECRET_KEY"] or _development_secret(instance)
    database_url = values["PORTAL_DATABASE_URL"] or f"sqlite:///{instance / 'portal.sqlite3'}"
    try:
        idle, max_hours = int(values["PORTAL_SESSION_IDLE_MINUTES"]), int(values["PORTAL_SESSION_MAX_HOURS"])
        retention_days = int(values["PORTAL_RETENTION_DAYS"])
        smtp_port = int(values["PORTAL_SMTP_PORT"])
    except ValueError:
        raise ConfigError("PORTAL_SESSION_IDLE_MINUTES, PORTAL_SESSION_MAX_HOURS, PORTAL_RETENTION_DAYS and "
                          "PORTAL_SMTP_PORT must be whole numbers") from None
    return PortalConfig(
        env=env,
        secret_key=secret,
        database_url=database_url,
        instance_path=instance,
        policy_dir=Path(values["PORTAL_POLICY_DIR"] or ROOT / "policies"),
        session_idle_minutes=idle,
        session_max_hours=max_hours,
        mfa_required_kinds=_mfa_required_kinds(values["PORTAL_MFA_REQUIRED_KINDS"]),
        log_level=values["PORTAL_LOG_LEVEL"],
        kek=values["PORTAL_KEK"],
        kek_file=values["PORTAL_KEK_FILE"],
        retention_days=retention_days,
        base_url=values["PORTAL_BASE_URL"].rstrip("/"),
        smtp={"host": values["PORTAL_SMTP_HOST"], "port": smtp_port, "username": values["PORTAL_SMTP_USERNAME"],
              "password": values["PORTAL_SMTP_PASSWORD"],
              "starttls": values["PORTAL_SMTP_STARTTLS"].lower() in ("1", "true", "yes")},
        mail_from=values["PORTAL_MAIL_FROM"],
        audit_key_file=values["PORTAL_AUDIT_KEY_FILE"],
        audit_witness_email=values["PORTAL_AUDIT_WITNESS_EMAIL"],
        redis_url=values["PORTAL_REDIS_URL"] or None,
        trusted_proxies=_trusted_proxies(values["PORTAL_TRUSTED_PROXIES"]),
        extra=overrides,
    )


def _trusted_proxies(value: str) -> int:
    """How many proxies' X-Forwarded-For entries to believe; more than are there lets clients spoof."""
    if not value.isdigit() or int(value) > 5:
        raise ConfigError("PORTAL_TRUSTED_PROXIES must be a whole number from 0 to 5")
    return int(value)


def _development_secret(instance: Path) -> str:
    """A secret generated once and kept under instance/, so restarts keep sessions valid."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


def _mfa_required_kinds(value: str) -> tuple[str, ...]:
    """The organization kinds named in PORTAL_MFA_REQUIRED_KINDS; a misspelled kind is an error."""
    from portal.models.organization import ORG_KINDS
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ORG_KINDS]
    if unknown:
        raise ConfigError(f"PORTAL_MFA_REQUIRED_KINDS: unknown organization kind(s) {', '.join(unknown)}; "
                          f"choose from {', '.join(ORG_KINDS)}")
    return kinds
