"""The `portal` command group. Small commands that call the same services as the web."""
from __future__ import annotations

import gc
import io
import os
import sys
import time

import click
from flask import current_app
from flask.cli import FlaskGroup
from sqlalchemy import select

from portal.audit.events import Event
from portal.config import ConfigError
from portal.policy.engine import PolicyError


def _create_app():
    from portal import create_app
    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=True, add_version_option=False)
def cli():
    """Peace Portal administration."""


def _db():
    from portal.db import get_session
    return get_session()


def _fail(message: str) -> None:
    click.echo(f"portal: {message}", err=True)
    sys.exit(2)


def _from_stdin(what: str) -> str:
    """A secret read from standard input (never an argument, which `ps` and shell history show)."""
    value = sys.stdin.readline().rstrip("\n")
    if not value:
        _fail(f"give {what} on standard input")
    return value


# -- database --------------------------------------------------------------------------------
@cli.group()
def db():
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision):
    """Apply migrations (SQLite or PostgreSQL)."""
    from portal import migrate
    migrate.upgrade(current_app.config["PORTAL"].database_url, revision)
    click.echo("database is at " + revision)


@db.command("check")
def db_check():
    """Fail if the models and the migrations disagree."""
    from portal import migrate
    migrate.check(current_app.config["PORTAL"].database_url)
    click.echo("models and migrations agree")


@db.command("grant-app-role")
@click.argument("role")
def db_grant_app_role(role):
    """PostgreSQL: grant ROLE what the web workers need; INSERT and SELECT only on the audit log."""
    from portal.audit.grants import grant_application_role
    from portal.db import make_engine
    engine = make_engine(current_app.config["PORTAL"].database_url)
    try:
        with engine.begin() as conn:
            statements = grant_application_role(conn, role)
    except ValueError as error:
        _fail(str(error))
    finally:
        engine.dispose()
    click.echo(f"{len(statements)} grant statement(s) run for {role}")


# -- organizations and users -----------------------------------------------------------------
@cli.group()
def orgs():
    """Organizations."""


@orgs.command("create")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(["hospital_program", "cvi_team", "service_provider",
                                                          "city_office", "police_partner"]))
@click.option("--zone", "zones", multiple=True, help="zone code served (repeatable)")
def orgs_create(name, kind, zones):
    """Create an organization."""
    from portal.admin import service
    from portal.errors import ServiceError
    from portal.models import Zone
    session = _db()
    found = {z.code: z.id for z in session.scalars(select(Zone).where(Zone.code.in_([c.upper() for c in zones])))}
    unknown = sorted({c.upper() for c in zones} - set(found))
    if unknown:
        _fail(f"unknown zone(s): {', '.join(unknown)}")
    try:
        org = service.create_organization(session, name, kind, list(found.values()))
    except ServiceError as error:
        _fail(error.message)
    session.commit()
    click.echo(f"created organization {org.id} ({kind})")


@orgs.command("sso")
@click.argument("org")
@click.option("--issuer", required=True, help="the provider's issuer, exactly as its discovery document names it")
@click.option("--client-id", required=True, help="this portal's client id at the provider")
@click.option("--allowed-domain", "allowed_domains", multiple=True, required=True,
              help="e-mail domain whose verified addresses may link to an existing account (repeatable)")
@click.option("--disable", is_flag=True, help="keep the settings but refuse sign-ins through them")
def orgs_sso(org, issuer, client_id, allowed_domains, disable):
    """Single sign-on for ORG (name or id); the client secret is read from standard input, never an argument."""
    import uuid

    from portal.auth import sso
    from portal.errors import ServiceError
    from portal.models import Organization
    secret = _from_stdin("the client secret")
    session = _db()
    found = session.scalar(select(Organization).where(Organization.name == org))
    if found is None:
        try:
            found = session.get(Organization, uuid.UUID(org))
        except ValueError:
            pass
    if found is None:
        _fail(f"no organization named {org!r}")
    try:
        provider = sso.configure(session, _keyring(), found, issuer, client_id, secret, list(allowed_domains),
                                 enabled=not disable, allow_http_loopback=not current_app.config["PORTAL"].production)
    except ServiceError as error:
        _fail(error.message)
    session.commit()
    click.echo(f"single sign-on for organization {found.id}: issuer {provider.issuer}, client {provider.client_id}, "
               f"domains {', '.join(provider.allowed_domains)}; {'enabled' if provider.enabled else 'disabled'}")


@cli.group()
def users():
    """Accounts."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--name", "display_name", required=True)
@click.option("--org", "org_name", required=True, help="organization name")
@click.option("--role", default="staff", type=click.Choice(["staff", "supervisor", "org_admin"]))
@click.option("--portal-admin", is_flag=True, help="may administer organizations and accounts")
def users_create(email, display_name, org_name, role, portal_admin):
    """Create an account; the password is read from standard input, never an argument."""
    from portal.admin import service
    from portal.errors import ServiceError
    from portal.models import Organization
    password = _from_stdin("the password")
    session = _db()
    org = session.scalar(select(Organization).where(Organization.name == org_name))
    if org is None:
        _fail(f"no organization named {org_name!r}")
    try:
        user, _ = service.create_user(session, org, email, display_name, role, password=password,
                                      portal_admin=portal_admin)
    except ServiceError as error:
        _fail(error.message)
    session.commit()
    click.echo(f"created user {user.id}")


# -- demo data -------------------------------------------------------------------------------
@cli.command("demo-data")
@click.option("--referrals", default=0, show_default=True, help="also create this many referrals of history")
@click.option("--seed", default=1, show_default=True, help="seed for the referral history")
def demo_data(referrals, seed):
    """Load the demo organizations and users, and referral history (development only; idempotent)."""
    from portal.demo import load_demo_data
    if current_app.config["PORTAL"].production:
        _fail("demo data is for development only; refused with PORTAL_ENV=production")
    session = _db()
    created, generated = load_demo_data(session, os.environ.get("PORTAL_DEMO_PASSWORD"))
    session.commit()
    _demo_second_factor(session)
    if created:
        click.echo(f"created {len(created)} demo account(s): {', '.join(created)}")
        if generated:
            click.echo(f"their password (shown once): {generated}")
        else:
            click.echo("their password is PORTAL_DEMO_PASSWORD")
    else:
        click.echo("demo data already present; passwords unchanged")
    if referrals:
        from portal.demo_history import load_demo_referrals
        from portal.policy import engine
        with click.progressbar(length=referrals, label="referral history", file=sys.stderr) as bar:
            made = load_demo_referrals(session, _keyring(), engine(), referrals, seed, progress=bar.update)
        click.echo(f"{made} referral(s) created ({referrals - made} already present)")
        done = _publish_due()
        click.echo(f"{len(done)} release(s) published from that history")


def _demo_second_factor(session) -> None:
    """With PORTAL_DEMO_TOTP_SECRET, the demo accounts share it as their second factor."""
    import segno

    from portal.auth import mfa
    from portal.demo import DemoSecretError, demo_totp_secret, enroll_demo_users
    if not os.environ.get("PORTAL_DEMO_TOTP_SECRET"):
        click.echo("demo accounts that need two-step sign-in set it up at their first sign-in "
                   "(or set PORTAL_DEMO_TOTP_SECRET; see README)")
        return
    try:
        secret = demo_totp_secret(os.environ["PORTAL_DEMO_TOTP_SECRET"])
    except DemoSecretError as error:
        _fail(str(error))
    enrolled = enroll_demo_users(session, _keyring(), secret)
    session.commit()
    uri = mfa.provisioning_uri(secret, "demo accounts")
    click.echo(f"{len(enrolled)} demo account(s) given PORTAL_DEMO_TOTP_SECRET as their second factor.")
    click.echo("Add it to an authenticator app: scan this QR code, or open/paste the otpauth URI below,")
    click.echo(f"or type the key {secret} (time-based, 6 digits, 30 seconds).")
    click.echo(uri)
    qr = io.StringIO()
    segno.make(uri, error="m").terminal(out=qr, compact=True)
    click.echo(qr.getvalue())


# -- keys and retention ----------------------------------------------------------------------
def _keyring():
    return current_app.extensions["portal.keyring"]


@cli.group()
def keys():
    """Key-encryption keys."""


@keys.command("generate")
def keys_generate():
    """Print a new key entry. Put it first in PORTAL_KEK, keep the old one after it, then rotate."""
    from portal.crypto import generate_key_entry
    click.echo(generate_key_entry())


@keys.command("rotate")
@click.option("--batch", default=500, show_default=True)
def keys_rotate(batch):
    """Re-wrap every data key under the current key (the first in PORTAL_KEK). Safe to re-run."""
    from portal.referrals.maintenance import keys_to_rotate, rotate_keys
    session, ring = _db(), _keyring()
    total = keys_to_rotate(session, ring)
    with click.progressbar(length=total, label=f"re-wrapping under {ring.current_id}",
                           file=sys.stderr) as bar:
        moved = rotate_keys(session, ring, batch=batch, progress=bar.update)
    from portal.auth import mfa
    moved += mfa.rotate_keys(session, ring)  # the second factors' secrets are sealed under the ring too
    from portal.auth import sso
    moved += sso.rewrap_secrets(session, ring)  # and single sign-on client secrets
    session.commit()
    _record_system(Event.KEYS_ROTATED, detail={"rewrapped": moved, "current_kek": ring.current_id})
    click.echo(f"{moved} data key(s) re-wrapped; every key is now under {ring.current_id}. "
               "Older keys may be removed from PORTAL_KEK.")


@cli.group()
def retention():
    """Retention of personal fields."""


@retention.command("run")
def retention_run():
    """End expired consents and purge personal fields of long-closed referrals. Idempotent."""
    from portal.db import utcnow
    from portal.policy import engine
    from portal.referrals import service
    from portal.auth import lockout, tokens
    from portal.referrals.maintenance import run_retention
    session, config = _db(), current_app.config["PORTAL"]
    with click.progressbar(length=0, label="retention", file=sys.stderr) as bar:
        done = run_retention(session, lambda: service.Context(session, _keyring(), engine(), None),
                             config.retention_days, utcnow(), progress=bar.update)
    done["pruned_links"], done["pruned_throttles"] = tokens.prune(session, utcnow()), lockout.prune(session, utcnow())
    session.commit()
    _record_system(Event.RETENTION_RUN, detail=done)
    click.echo(f"{done['expired_consents']} expired consent(s) ended; "
               f"{done['purged_referrals']} closed referral(s) purged of personal fields; "
               f"{done['pruned_links']} dead sign-in link(s) and {done['pruned_throttles']} stale lockout counter(s) "
               "deleted")
    # Ended consents revoke referrals sent on days across the whole history: bring the dashboard's
    # rollups up to date here, so that no page request has to re-aggregate them.
    _refresh_rollups(session)


def _refresh_rollups(session) -> None:
    from portal.dashboards import rollups
    started = time.monotonic()
    days = rollups.refresh(session)
    session.commit()
    click.echo(f"dashboard rollups: {days} day(s) refreshed in {time.monotonic() - started:.1f} s")


@cli.group()
def releases():
    """Published aggregate releases."""


@releases.command("publish")
def releases_publish():
    """Publish every month that is due (closed, and the lag passed). Run from cron; idempotent."""
    done = _publish_due()
    click.echo(f"{len(done)} release(s) published" + (f": No. {done[0].number}–{done[-1].number}" if done else ""))


@releases.command("correct")
@click.argument("month")
@click.option("--reason", required=True, help="why, in at most 200 characters; shown in the ledger")
def releases_correct(month, reason):
    """Publish a correction of MONTH (YYYY-MM) as a new release, audited against every earlier one."""
    from portal.db import utcnow
    from portal.releases.publish import CorrectionError, build_correction
    session = _db()
    try:
        release = build_correction(session, current_app.extensions["portal.catalog"], month, reason, utcnow())
    except CorrectionError as error:
        _fail(str(error))
    session.add(release)
    session.commit()
    _record_system(Event.RELEASE_CORRECTED, release, detail={"period": month, "corrects": release.corrects})
    suppressed = sum(1 for s in release.statistics if s["value"] is None)
    click.echo(f"release No. {release.number} corrects No. {release.corrects} ({month}); "
               f"{suppressed} of {len(release.statistics)} numbers suppressed")


@releases.command("audit")
def releases_audit():
    """Audit every published number of every release together; exit 1 on any way in."""
    from portal.disclosure import Statistic, audit
    from portal.models import Release
    statistics = [Statistic(s["key"], frozenset(s["atoms"]), s["value"], 0)
                  for r in _db().scalars(select(Release)) for s in r.statistics]
    violations = audit(statistics, current_app.extensions["portal.catalog"].k)
    for v in violations:
        click.echo(f"portal: {v.key} can be narrowed to [{v.low:.1f}, {v.high:.1f}]: {v.reason}", err=True)
    if violations:
        sys.exit(1)
    suppressed = sum(1 for s in statistics if s.value is None)
    click.echo(f"{len(statistics)} published numbers audited, {suppressed} suppressed: no way in")


def _publish_due():
    from portal.db import utcnow
    from portal.releases.publish import publish_due
    with click.progressbar(length=0, label="releases", file=sys.stderr) as bar:
        done = publish_due(_db(), current_app.extensions["portal.catalog"], utcnow(), progress=bar.update)
    for release in done:
        _record_system(Event.RELEASE_PUBLISHED, release, detail={"period": release.period})
    return done


def _record_system(event, resource=None, detail=None) -> None:
    """An operator's command in the audit log, committed on its own (the work already is)."""
    from portal.audit import trail
    session = _db()
    trail.record(event, resource, detail=detail, db=session)
    session.commit()


@cli.group()
def dashboards():
    """The city dashboard's daily rollups."""


@dashboards.command("rebuild")
def dashboards_rebuild():
    """Recompute every daily rollup from the referrals (after a bulk load that skipped the triggers)."""
    from portal.dashboards import rollups
    session, started = _db(), time.perf_counter()
    rollups.rebuild(session)
    session.commit()
    _record_system(Event.DASHBOARDS_REBUILT)
    click.echo(f"dashboard rollups rebuilt in {time.perf_counter() - started:.1f} s")


@dashboards.command("refresh")
def dashboards_refresh():
    """Re-aggregate the days whose referrals changed since the last refresh. Run from cron every few
    minutes, so that the first dashboard read after busy hours does not pay for it; safe to run often."""
    _refresh_rollups(_db())


@cli.group()
def notifications():
    """The mail outbox."""


@notifications.command("send")
def notifications_send():
    """Send what waits in the outbox (run from cron; safe to run often)."""
    from portal.notify import deliver_pending
    sent, failed = deliver_pending(_db(), current_app.config["PORTAL"])
    click.echo(f"{sent} sent, {failed} waiting")


# -- audit log -------------------------------------------------------------------------------
@cli.group()
def audit():
    """The tamper-evident audit log: checkpoints, verification, proofs."""


def _signing_key():
    from portal.audit.checkpoint import CheckpointError
    from portal.audit.witness import signing_key
    config = current_app.config["PORTAL"]
    try:
        return signing_key(config.audit_key_file, config.instance_path, config.production)
    except (CheckpointError, OSError) as error:
        _fail(str(error))


def _origin() -> str:
    from portal.audit.witness import origin_for
    return origin_for(current_app.config["PORTAL"].base_url)


@audit.command("checkpoint")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="also write the signed text here")
@click.option("--mail", is_flag=True, help="e-mail it to PORTAL_AUDIT_WITNESS_EMAIL")
def audit_checkpoint(out, mail):
    """Sign the log's current size and root; print the checkpoint for the witness."""
    from portal.audit.mail import WitnessMailError, send_checkpoint
    from portal.audit.witness import sign_checkpoint
    from portal.db import utcnow
    session, config = _db(), current_app.config["PORTAL"]
    if mail and not config.audit_witness_email:
        _fail("--mail needs PORTAL_AUDIT_WITNESS_EMAIL")
    text, checkpoint = sign_checkpoint(session, _signing_key(), _origin(), utcnow())
    session.commit()
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    if mail:
        try:
            send_checkpoint(config, config.audit_witness_email, text, checkpoint.size)
        except WitnessMailError as error:
            _fail(f"checkpoint stored but not mailed: {error}")
    click.echo(text, nl=False)


@audit.command("public-key")
def audit_public_key():
    """Print the public key that verifies checkpoints and proofs (publish it; give it to witnesses)."""
    from portal.audit.checkpoint import public_key_pem
    click.echo(public_key_pem(_signing_key()), nl=False)


def _public_key(path):
    from portal.audit.checkpoint import CheckpointError, load_public_key
    if path is None:
        return _signing_key().public_key()
    try:
        with open(path, "rb") as f:
            return load_public_key(f.read())
    except (OSError, CheckpointError) as error:
        _fail(f"{path}: {error}")


@audit.command("verify")
@click.option("--checkpoint", "witness", type=click.File("r", encoding="utf-8"),
              help="a signed checkpoint kept by the witness")
@click.option("--public-key", "public_key", type=click.Path(exists=True, dir_okay=False),
              help="PEM public key (default: the configured signing key's)")
def audit_verify(witness, public_key):
    """Recompute the tree; prove it extends the latest stored and the witness's checkpoint."""
    from portal.audit.witness import verify
    # A million events make a million short-lived rows and hashes and no reference cycle: the cyclic
    # collector would only walk them again and again (17% of the run at 1M events).
    gc.disable()
    try:
        result = verify(_db(), _public_key(public_key), witness.read() if witness else None)
    finally:
        gc.enable()
    for line in result.checked:
        click.echo(line)
    for problem in result.problems:
        click.echo(f"portal: {problem}", err=True)
    if not result.ok:
        sys.exit(1)
    click.echo("the audit log is intact")


@audit.command("prove")
@click.argument("seq", type=click.IntRange(min=0))
def audit_prove(seq):
    """Print an inclusion proof of event SEQ, with a signed checkpoint and the public key (JSON)."""
    import json

    from portal.audit.log import AuditError
    from portal.audit.witness import prove
    from portal.db import utcnow
    session = _db()
    try:
        proof = prove(session, seq, _signing_key(), _origin(), utcnow())
    except AuditError as error:
        _fail(str(error))
    session.commit()
    click.echo(json.dumps(proof, indent=2))


@audit.command("check-proof")
@click.argument("proof_file", type=click.File("r", encoding="utf-8"))
@click.option("--public-key", "public_key", type=click.Path(exists=True, dir_okay=False), required=True)
def audit_check_proof(proof_file, public_key):
    """Check a proof from `portal audit prove` with the public key alone (no database needed)."""
    import json

    from portal.audit.checkpoint import CheckpointError
    from portal.audit.merkle import ProofError
    from portal.audit.witness import check_proof
    try:
        checkpoint = check_proof(json.load(proof_file), _public_key(public_key))
    except (ValueError, KeyError, TypeError, CheckpointError, ProofError) as error:
        _fail(f"the proof does not hold: {error}")
    click.echo(f"event is leaf of the signed log of {checkpoint.size} events")


# -- policy ----------------------------------------------------------------------------------
@cli.group()
def policy():
    """Authorization policies."""


@policy.command("check")
@click.option("--policy-dir", type=click.Path(exists=True, file_okay=False), default=None)
@click.option("--write", is_flag=True, help="regenerate policies/tests/decisions.csv (then review the diff)")
def policy_check(policy_dir, write):
    """Validate the policies, compare every decision with the table, prove the boundary."""
    from pathlib import Path

    from portal.policy.check import check
    problems = check(Path(policy_dir or current_app.config["PORTAL"].policy_dir), write=write)
    for problem in problems:
        click.echo(f"portal: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo("policies valid against the schema; decisions match the table; the boundary holds")


def main() -> None:
    try:
        cli.main(prog_name="portal")
    except (ConfigError, PolicyError) as exc:
        click.echo(f"portal: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
