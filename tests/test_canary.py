"""Canary: a person's details, seeded through the real paths, surface only where they belong.

Unique strings (a preferred name, a phone number, the best time, a language, a code word, a note
with an address and the help the person needs, a contact-log note) go in through the referral
form, the JSON API and a handoff. Then every kind of user acts: the sending hospital, the
receiving CVI team, the other CVI team, the service provider the referral was handed to, the city
office, the police partner and the portal administrator, with dashboards, CSV exports, the
aggregates API, error pages (404, 400, 409, 422, and a real 500), e-mail through a real SMTP
server, a crawl of every route by every outsider, and the operator's cron commands (key rotation,
retention, the mail outbox, releases) in their own process at DEBUG. The canary must then appear on the
receiving teams' pages (so it was really seeded) and nowhere else: not in a response to anyone
else, not in an e-mail, not in a session cookie, not in any log record (every logger at DEBUG,
SQLAlchemy's engine included), and not in any column of any table of the database -- the
encrypted columns hold ciphertext, so a scan of every cell must find no plaintext at all. The
scan reads the tables the database has (reflected), so tables added later (the audit log) are
covered without a change here.
"""
from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_string, policy
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, func, select, text

from portal.crypto import generate_key_entry
from portal.dashboards.queries import TABLES as DASHBOARD_TABLES
from portal.db import get_session
from portal.models import Consent, ContactAttempt, Organization, Referral, User, Zone
from tests.conftest import KEK, SECRET, Inbox, csrf_token, login, make_test_app
from tests.referral_world import World, build_world
from tests.test_crawl import NO_SUCH_ID, Crawled, crawl
from tests.test_referrals import form

ROOT = Path(__file__).resolve().parent.parent


# -- the canary ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Canary:
    """One person's details, every text field carrying the same unique token."""

    token: str
    phone_digits: str  # ten digits, North American

    @classmethod
    def new(cls, tag: str) -> "Canary":
        rng = random.Random(uuid.uuid4().int)
        digits = "555" + str(rng.randint(2, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(6))
        return cls(f"Zq7{tag}{uuid.uuid4().hex[:12]}", digits)

    @property
    def name(self) -> str:
        return f"Canary-{self.token}"

    @property
    def phone(self) -> str:  # as a nurse types it
        d = self.phone_digits
        return f"({d[:3]}) {d[3:6]}-{d[6:]}"

    @property
    def e164(self) -> str:
        return "+1" + self.phone_digits

    @property
    def person(self) -> dict:
        return {"preferred_name": self.name, "phone": self.phone, "best_time": f"after 4pm, ask for {self.token}",
                "language": f"Canarese {self.token}", "safe_to_text": True, "safe_voicemail": False,
                "code_word": f"word {self.token}"}

    @property
    def note(self) -> str:  # an address and the help needed: the free text a nurse might write
        return f"Canary {self.token} stays at 42 Wren Street apt 7; needs housing and a job"

    @property
    def contact_note(self) -> str:
        return f"Canary {self.token} met outside the corner store"

    @property
    def needles(self) -> tuple[str, ...]:
        """What must not leak, lower-cased: the token (in every text field) and the phone in each form."""
        d = self.phone_digits
        return (self.token.lower(), self.e164, d, f"{d[3:6]}-{d[6:]}", f"{d[3:6]}{d[6:]}")


def leaks_in(text: str, canaries) -> list[str]:
    lowered = text.lower()
    return [needle for c in canaries for needle in c.needles if needle in lowered]


@dataclass
class Seen:
    """Every answer a user got, to be searched afterwards."""

    leaks: list[str] = field(default_factory=list)
    checked: int = 0

    def must_not_show(self, who: str, response, canaries, what: str = ""):
        body = response.get_data(as_text=True)
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        found = leaks_in(body + "\n" + headers, canaries)
        if found:
            self.leaks.append(f"{who} {what or response.request.path} → {response.status_code}: {found}")
        self.checked += 1
        return response


# -- the running world -------------------------------------------------------------------------------
@pytest.fixture
def canary_app(database_url, tmp_path, smtp, app):
    """The portal with a real mail server; `app` (tests/conftest.py) empties the tables afterwards."""
    controller, _ = smtp
    mail_app = make_test_app(database_url, tmp_path, PORTAL_SMTP_HOST="127.0.0.1",
                             PORTAL_SMTP_PORT=str(controller.port), PORTAL_BASE_URL="https://portal.example",
                             RATELIMIT_ENABLED=False)  # the crawls send many requests from one address
    yield mail_app
    mail_app.extensions["portal.db"].dispose()


def closed(response):
    """Close the response as a WSGI server does once it is sent; that is when the outbox is tried."""
    response.close()
    return response


def signed_in(app, user: User):
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    return client


def api_post(client, path: str, body=None, data: bytes | None = None):
    token = csrf_token(client, "/")
    if data is not None:
        return client.post(path, data=data, content_type="application/json", headers={"X-CSRFToken": token})
    return client.post(path, json=body, headers={"X-CSRFToken": token})


def post_form(client, path: str, data: dict):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/")})


def referral_form(world: World, canary: Canary, **overrides) -> dict:
    return form(world, **{"person.preferred_name": canary.name, "person.phone": canary.phone,
                          "person.best_time": canary.person["best_time"], "person.language": canary.person["language"],
                          "person.code_word": canary.person["code_word"], "note": canary.note,
                          "consent.recipient_org_ids": [str(world.north.id), str(world.provider.id)], **overrides})


def api_body(world: World, canary: Canary, **overrides) -> dict:
    body = {"receiver_org_id": str(world.north.id), "person": canary.person, "age_band": "25_34", "zone": "N1",
            "reason": "assault", "services": ["conflict_mediation"], "urgency": "routine", "note": canary.note,
            "consent": {"method": "written", "recipient_org_ids": [str(world.north.id)],
                        "data_categories": ["contact", "note"]}}
    body.update(overrides)
    return body


def count(app, model) -> int:
    with app.app_context():
        return get_session().scalar(select(func.count()).select_from(model))


# -- the database, every cell ----------------------------------------------------------------------------
def cell_text(value) -> str | None:
    """A cell as text to search: bytes byte for byte (latin-1), JSON as JSON, None as nothing."""
    if value is None:
        return None
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def scan_database(url: str, needles: list[str]) -> tuple[list[str], dict[str, int]]:
    """Every row of every table the database has (reflected, not from the models): where each needle
    occurs, as `table.column: needle`, and the row count of each table."""
    engine = create_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    found, rows = [], {}
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                rows[table.name] = 0
                for row in conn.execute(select(table)):
                    rows[table.name] += 1
                    for column, value in zip(table.columns, row):
                        haystack = cell_text(value)
                        if haystack is None:
                            continue
                        haystack = haystack.lower()
                        found += [f"{table.name}.{column.name}: {n}" for n in needles if n.lower() in haystack]
    finally:
        engine.dispose()
    return found, rows


# -- logs and mail --------------------------------------------------------------------------------
def record_text(record: logging.LogRecord) -> str:
    """A log record as a handler would write it, with its traceback and stack."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return formatter.format(record) + "\n" + (record.stack_info or "")


def mail_texts(inbox: Inbox) -> list[str]:
    """Each message raw (headers and encoded body) and decoded (every part)."""
    texts = []
    for _, content in inbox.messages:
        message = message_from_string(content, policy=policy.default)
        decoded = [part.get_content() for part in message.walk() if not part.is_multipart()]
        texts.append(content + "\n" + "\n".join(str(d) for d in decoded))
    return texts


def session_text(app, client) -> str:
    """What a session cookie holds, decoded (it is signed, not encrypted: anyone holding it can read it)."""
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    if cookie is None:
        return ""
    return json.dumps(app.session_interface.get_signing_serializer(app).loads(cookie.value), default=str)


@contextmanager
def inserts_refused(app, table: str):
    """A real database failure on demand: a trigger refuses every insert into `table` as a constraint
    violation would (not a lost connection, which the portal answers with 503: a bug, answered 500)."""
    engine = app.extensions["portal.db"].engine
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("CREATE FUNCTION canary_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                              "RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation'; END $$"))
            conn.execute(text(f'CREATE TRIGGER canary_refuse BEFORE INSERT ON "{table}" '
                              "FOR EACH ROW EXECUTE FUNCTION canary_refuse()"))
        else:
            conn.execute(text(f'CREATE TRIGGER canary_refuse BEFORE INSERT ON "{table}" '
                              "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text(f'DROP TRIGGER canary_refuse ON "{table}"'))
                conn.execute(text("DROP FUNCTION canary_refuse()"))
            else:
                conn.execute(text("DROP TRIGGER canary_refuse"))


# -- the tests ------------------------------------------------------------------------------------------
def test_a_database_failure_mid_request_answers_the_error_page_and_keeps_nothing(canary_app, caplog):
    """A flush that fails inside a request leaves the session unusable until rolled back; the 500
    page (whose navigation asks the policy engine about the user, and so the database) still renders,
    says nothing of the error, and nothing of the referral is kept."""
    world = build_world(canary_app)
    canary = Canary.new("d")
    nurse = signed_in(canary_app, world.nurse)
    with inserts_refused(canary_app, "notifications"):
        failed = post_form(nurse, "/referrals/new", referral_form(world, canary))
    body = failed.get_data(as_text=True)
    assert failed.status_code == 500 and "Something went wrong" in body and 'href="/referrals/new"' in body
    assert "refused by the test" not in body and "Traceback" not in body and canary.token not in body.lower()
    assert count(canary_app, Referral) == 0
    assert [r.name for r in caplog.records if r.exc_info] == ["portal.errors"]
    # and the portal carries on
    assert closed(post_form(nurse, "/referrals/new", referral_form(world, canary))).status_code == 303


def test_canary_reaches_the_receiving_teams_and_nowhere_else(canary_app, database_url, smtp, caplog, tmp_path):
    """The canary shows on the receiving teams' pages, and in no other response, e-mail, cookie, log
    record or database cell, through every role's work, the error pages and a crawl of every route."""
    app = canary_app
    _, inbox = smtp
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # SQLAlchemy pins its own logger to WARNING
    world = build_world(app)
    by_form, by_api = Canary.new("f"), Canary.new("a")
    canaries = (by_form, by_api)
    seen = Seen()
    clients = {}

    def client(name: str):
        if name not in clients:
            clients[name] = signed_in(app, getattr(world, name))
        return clients[name]

    # -- the hospital sends: a form with a mistake, then the form, then the API -----------------------
    nurse = client("nurse")
    mistaken = post_form(nurse, "/referrals/new", referral_form(world, by_form, **{"person.phone": "call me"}))
    assert mistaken.status_code == 422 and by_form.name in mistaken.get_data(as_text=True)  # kept for the author
    assert count(app, Referral) == 0
    sent = closed(post_form(nurse, "/referrals/new", referral_form(world, by_form)))
    assert sent.status_code == 303, sent.get_data(as_text=True)
    parent = uuid.UUID(sent.location.rsplit("/", 1)[1])

    bad = api_post(nurse, "/api/v1/referrals", api_body(world, by_api, zone="ZZ9", age_band="nope"))
    assert bad.status_code == 422 and bad.json["errors"]
    seen.must_not_show("nurse", bad, canaries, "POST /api/v1/referrals (invalid)")
    malformed = api_post(nurse, "/api/v1/referrals",
                         data=json.dumps(api_body(world, by_api)).encode()[:-7])  # cut short: not JSON
    assert malformed.status_code == 400
    seen.must_not_show("nurse", malformed, canaries, "POST /api/v1/referrals (not JSON)")
    created = closed(api_post(nurse, "/api/v1/referrals", api_body(world, by_api)))
    assert created.status_code == 201, created.get_data(as_text=True)
    seen.must_not_show("nurse", created, canaries, "POST /api/v1/referrals (the sender's answer)")
    by_api_id = uuid.UUID(created.json["id"])

    # -- the receiving team works both; hands the first to the provider -------------------------------
    north = client("north_staff")
    inbox_page = north.get("/referrals/inbox").get_data(as_text=True)
    assert by_form.name in inbox_page and by_api.name in inbox_page
    assert closed(post_form(north, f"/referrals/{parent}/accept", {})).status_code == 303
    assert closed(post_form(north, f"/referrals/{parent}/contact-attempts",
                            {"outcome": "reached", "note": by_form.contact_note})).status_code == 303
    page = north.get(f"/referrals/{parent}").get_data(as_text=True)
    for shown in (by_form.name, by_form.e164, by_form.note, by_form.contact_note, by_form.person["best_time"],
                  by_form.person["language"], by_form.person["code_word"]):
        assert shown in page, f"the receiving team should see {shown!r}: the canary was not seeded"
    assert closed(api_post(north, f"/api/v1/referrals/{by_api_id}/accept")).status_code == 200
    detail = north.get(f"/api/v1/referrals/{by_api_id}").json
    assert detail["person"]["preferred_name"] == by_api.name and detail["note"] == by_api.note
    handed = closed(post_form(north, f"/referrals/{parent}/handoff", {"receiver_org_id": str(world.provider.id)}))
    assert handed.status_code == 303, handed.get_data(as_text=True)
    with app.app_context():
        child = get_session().scalar(select(Referral.id).where(Referral.parent_id == parent))
    assert child is not None

    # the receiving team's own error answers carry nothing of the person either
    for path in (f"/referrals/{NO_SUCH_ID}", "/referrals/inbox?status=bogus", f"/api/v1/referrals/{NO_SUCH_ID}",
                 "/api/v1/referrals?status=bogus", "/api/v1/referrals?limit=0", "/no-such-page"):
        response = seen.must_not_show("north", north.get(path), canaries)
        assert response.status_code in (400, 404), (path, response.status_code)
    conflict = api_post(north, f"/api/v1/referrals/{by_api_id}/accept")
    assert conflict.status_code == 409
    seen.must_not_show("north", conflict, canaries, "POST accept again (409)")

    # -- the provider sees its handed-off referral, and not the original -------------------------------
    provider = client("provider_staff")
    child_page = provider.get(f"/referrals/{child}").get_data(as_text=True)
    assert by_form.name in child_page and by_form.note in child_page
    assert by_form.contact_note not in child_page  # the contact log stays with the team that wrote it
    for path in (f"/referrals/{parent}", f"/api/v1/referrals/{parent}", f"/referrals/{by_api_id}"):
        assert seen.must_not_show("provider", provider.get(path), canaries).status_code == 404

    # -- the sender follows the loop: status only ---------------------------------------------------------
    for path in ("/", "/referrals/sent", f"/referrals/{parent}", f"/referrals/{by_api_id}",
                 "/api/v1/referrals?box=sent", f"/api/v1/referrals/{parent}", f"/api/v1/referrals/{by_api_id}",
                 f"/referrals/{child}"):
        seen.must_not_show("nurse", nurse.get(path), canaries)

    # -- the city office: dashboards, every CSV export, the aggregates --------------------------------
    city = client("city_staff")
    catalog = app.extensions["portal.catalog"]
    city_paths = ["/", "/dashboards/city", "/dashboards/city?period=month&zone=N1", "/dashboards/city?from=bogus",
                  "/aggregates/", "/aggregates/ledger", "/api/v1/aggregates", "/api/v1/aggregates/no_such_table",
                  *(f"/dashboards/city/export/{t}.csv" for t in DASHBOARD_TABLES),
                  *(f"/aggregates/{t}" for t in catalog.tables), *(f"/api/v1/aggregates/{t}" for t in catalog.tables)]
    for path in city_paths:
        seen.must_not_show("city", city.get(path), canaries)
    assert city.get(f"/dashboards/city/export/{DASHBOARD_TABLES[0]}.csv").mimetype == "text/csv"

    # -- the police partner: aggregates only -----------------------------------------------------------
    police = client("police_staff")
    for path in ["/", "/aggregates/", *(f"/aggregates/{t}" for t in catalog.tables), "/api/v1/aggregates",
                 *(f"/api/v1/aggregates/{t}" for t in catalog.tables), "/api/v1/aggregates/x?zone=N1",
                 f"/referrals/{parent}", f"/api/v1/referrals/{by_api_id}", "/dashboards/city"]:
        seen.must_not_show("police", police.get(path), canaries)

    # -- the other CVI team and the portal administrator -------------------------------------------------
    east = client("east_admin")
    for path in ("/referrals/inbox", f"/referrals/{parent}", f"/referrals/{child}", f"/api/v1/referrals/{by_api_id}",
                 "/api/v1/referrals"):
        seen.must_not_show("east", east.get(path), canaries)
    assert seen.must_not_show("east", post_form(east, f"/referrals/{parent}/accept", {}), canaries).status_code == 404
    admin = client("portal_admin")
    for path in ["/admin/organizations", "/admin/zones", f"/referrals/{parent}",
                 *(f"/admin/organizations/{o.id}" for o in (world.north, world.hospital, world.provider))]:
        seen.must_not_show("admin", admin.get(path), canaries)

    # -- a real 500 while the canary is in flight: the outbox refuses its rows mid-request -------------
    third = Canary.new("e")
    canaries = (*canaries, third)
    before = count(app, Referral)
    with inserts_refused(app, "notifications"):
        failed = post_form(nurse, "/referrals/new", referral_form(world, third))
    assert failed.status_code == 500 and "Something went wrong" in failed.get_data(as_text=True)
    assert "Traceback" not in failed.get_data(as_text=True)
    seen.must_not_show("nurse", failed, canaries, "POST /referrals/new (500)")
    assert count(app, Referral) == before  # nothing half-written
    assert any(r.name == "portal.errors" and r.exc_info for r in caplog.records), "the 500 was not logged"

    # -- the database now, while the referrals still hold their (encrypted) details ----------------------
    assert_database_clean(app, database_url, canaries, world)

    # -- every outsider crawls every route, GET and POST (the nurse's POSTs may revoke and shred; the
    # administrator's may deactivate accounts, so that crawl comes last) ---------------------------------
    crawled = crawled_world(app, world)
    # The engine's statement and row logging was on for all the work above, where the canary went in
    # and came out; over some ten thousand crawled requests it would only cost minutes.
    caplog.set_level(logging.WARNING, logger="sqlalchemy")
    for name in ("east_admin", "city_staff", "police_staff", "nurse", None, "portal_admin"):
        result = crawl(app, crawled, getattr(world, name) if name else None)
        assert len(result.hits) > 100
        for hit in result.hits:
            found = leaks_in(hit.body + "\n" + hit.headers, canaries)
            if found:
                seen.leaks.append(f"{name or 'visitor'} {hit.method} {hit.path} → {hit.status}: {found}")
            seen.checked += 1

    # -- the verdicts ---------------------------------------------------------------------------------
    assert seen.leaks == [], "the canary reached someone it must not:\n" + "\n".join(seen.leaks)
    assert seen.checked > 500

    mails = mail_texts(inbox)
    # the North team (3) for each referral, the provider for the handoff, the nurse for each acceptance
    assert len(mails) >= 8, len(mails)
    mail_leaks = [f"message {i}: {leaks_in(m, canaries)}" for i, m in enumerate(mails) if leaks_in(m, canaries)]
    assert mail_leaks == [], mail_leaks

    cookie_leaks = [f"{name}: {leaks_in(session_text(app, c), canaries)}" for name, c in clients.items()
                    if leaks_in(session_text(app, c), canaries)]
    assert cookie_leaks == [], cookie_leaks

    records = caplog.records
    engine_lines = [r.getMessage() for r in records if r.name.startswith("sqlalchemy.engine")]
    # proof that SQL was logged, statements and result rows, while the canary went in and came out
    assert any("INSERT INTO referrals" in line for line in engine_lines), "no SQL was logged"
    assert any(line.startswith("Row ") for line in engine_lines), "no result row was logged"
    assert any("parameters hidden" in line for line in engine_lines), "SQL parameters must be hidden"
    log_leaks = [f"{r.name} {r.levelname}: {leaks_in(record_text(r), canaries)}" for r in records
                 if leaks_in(record_text(r), canaries)]
    assert log_leaks == [], "the canary reached the log:\n" + "\n".join(log_leaks)
    emails = [u.email.lower() for u in vars(world).values() if isinstance(u, User)]
    # the engine's DEBUG rows show users' rows by design; aiosmtpd is the test's mail server, not the portal
    email_lines = [f"{r.name}: {r.getMessage()}" for r in records if not r.name.startswith(("sqlalchemy", "mail.log"))
                   and any(e in record_text(r).lower() for e in emails)]
    assert email_lines == [], "an account's e-mail address reached the log:\n" + "\n".join(email_lines)

    # -- the operator's cron commands, in their own process, logging at DEBUG --------------------------
    outputs = run_portal(database_url, tmp_path, smtp[0].port, ["keys", "rotate"], ["retention", "run"],
                         ["notifications", "send"], ["releases", "publish"], ["releases", "audit"])
    assert "re-wrapped" in outputs[0], outputs[0]
    cli_leaks = [f"{out.splitlines()[0]}: {leaks_in(out, canaries)}" for out in outputs if leaks_in(out, canaries)]
    assert cli_leaks == [], cli_leaks
    assert not [m for m in mail_texts(inbox) if leaks_in(m, canaries)]

    assert_database_clean(app, database_url, canaries, world)


def run_portal(database_url: str, tmp_path, smtp_port: int, *commands: list[str]) -> list[str]:
    """`portal ...` as cron runs it, on the test's database, with a new key-encryption key first
    (so `keys rotate` really re-wraps); returns each command's output, stdout and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_ENV="test", PORTAL_DATABASE_URL=database_url, PORTAL_SECRET_KEY=SECRET,
               PORTAL_INSTANCE_PATH=str(tmp_path / "cli"), PORTAL_KEK=f"{generate_key_entry('rotated')},{KEK}",
               PORTAL_LOG_LEVEL="DEBUG", PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=str(smtp_port))
    outputs = []
    for args in commands:
        result = subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True,
                                env=env, cwd=ROOT, timeout=120)
        output = f"$ portal {' '.join(args)}\n{result.stdout}\n{result.stderr}"
        assert result.returncode == 0, output
        outputs.append(output)
    return outputs


def assert_database_clean(app, database_url: str, canaries, world: World) -> None:
    """No cell of any table holds the canary; and the scan provably reads text and binary cells."""
    with app.app_context():
        db = get_session()
        ciphertext = db.scalar(select(Referral.personal_enc).where(Referral.personal_enc.is_not(None)))
    needles = [n for c in canaries for n in c.needles]
    markers = [world.nurse.email]
    if ciphertext:
        markers.append(bytes(ciphertext)[8:24].decode("latin-1"))  # a piece of the sealed person
    found, rows = scan_database(database_url, needles + markers)
    leaks = [f for f in found if not any(f.endswith(": " + m) for m in markers)]
    assert leaks == [], "the canary is stored in plaintext:\n" + "\n".join(leaks)
    assert f"users.email: {world.nurse.email}" in found, "the scan did not read text cells"
    if ciphertext:
        assert any(f.startswith("referrals.personal_enc: ") for f in found), "the scan did not read binary cells"
    assert rows["referrals"] >= 2 and rows["users"] >= 9 and rows["notifications"] >= 1, rows
    audit = {name: n for name, n in rows.items() if name.startswith("audit")}
    assert not audit or sum(audit.values()) > 0, f"the audit log recorded nothing: {audit}"


def crawled_world(app, world: World) -> Crawled:
    """The ids the crawler fills route parameters with: every row about the person, and the people and
    organizations that handled them (tests/test_crawl.py crawls with every id of its world)."""
    with app.app_context():
        db = get_session()

        def ids(model):
            return list(db.scalars(select(model.id).order_by(model.id)))

        return Crawled(world=world, referrals={}, referral_ids=ids(Referral), consent_ids=ids(Consent),
                       user_ids=[world.nurse.id, world.north_staff.id, world.provider_staff.id],
                       org_ids=[world.hospital.id, world.north.id, world.provider.id],
                       attempt_ids=ids(ContactAttempt), zone_ids=ids(Zone)[:1])
