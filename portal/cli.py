"""The `portal` command group. Small commands that call the same services as the web."""
from __future__ import annotations

import os
import sys

import click
from flask import current_app
from flask.cli import FlaskGroup
from sqlalchemy import select

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
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        _fail("give the password on standard input")
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
    from portal.referrals.maintenance import run_retention
    session, config = _db(), current_app.config["PORTAL"]
    with click.progressbar(length=0, label="retention", file=sys.stderr) as bar:
        done = run_retention(session, lambda: service.Context(session, _keyring(), engine(), None),
                             config.retention_days, utcnow(), progress=bar.update)
    click.echo(f"{done['expired_consents']} expired consent(s) ended; "
               f"{done['purged_referrals']} closed referral(s) purged of personal fields")


@cli.group()
def releases():
    """Published aggregate releases."""


@releases.command("publish")
def releases_publish():
    """Publish every month that is due (closed, and the lag passed). Run from cron; idempotent."""
    done = _publish_due()
    click.echo(f"{len(done)} release(s) published" + (f": No. {done[0].number}–{done[-1].number}" if done else ""))


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
        return publish_due(_db(), current_app.extensions["portal.catalog"], utcnow(), progress=bar.update)


@cli.group()
def notifications():
    """The mail outbox."""


@notifications.command("send")
def notifications_send():
    """Send what waits in the outbox (run from cron; safe to run often)."""
    from portal.notify import deliver_pending
    sent, failed = deliver_pending(_db(), current_app.config["PORTAL"])
    click.echo(f"{sent} sent, {failed} waiting")


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
