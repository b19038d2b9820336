"""Crawl every route as each outside role and prove the boundary holds on all of them.

The route list is read from `app.url_map` at run time (never a hand-kept list), so a route added
tomorrow is crawled tomorrow. Every path parameter is filled with every real id of the world --
referrals, consents, users, organizations, contact attempts, zones, and one that does not exist --
whatever the parameter is called: a wrong type of id must be refused as surely as a wrong row.
Each route is requested with GET and with POST (a valid CSRF token and an otherwise empty form).
"""
from __future__ import annotations

import html
import itertools
import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, UUIDConverter

from portal.db import get_session, utcnow
from portal.models import Consent, ContactAttempt, Organization, Referral, ReferralEvent, User, Zone
from portal.policy import Action
from portal.policy.gate import declared_action, is_public
from portal.releases.publish import publish_due
from tests.conftest import CSRF_META, csrf_token, login
from tests.referral_world import World, build_world
from tests.test_referrals import act, form, send, sign_in


# -- the people in the world: distinctive values that can only come from a referral ------------
@dataclass(frozen=True)
class Person:
    key: str
    name: str
    phone: str  # as the nurse typed it
    note: str
    contact_note: str | None = None

    @property
    def e164(self) -> str:
        return "+1" + re.sub(r"\D", "", self.phone)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every form in which this person's details could show up in a response."""
        values = [self.name, *(part for part in self.name.split() if len(part) >= 5), self.phone, self.e164,
                  self.e164[2:], self.note]
        if self.contact_note:
            values.append(self.contact_note)
        return tuple(values)


WORKED = Person("worked", "Zephyrine Quillfeather", "(555) 201-7391", "Prefers mornings near Larkspur Ave",
                "Met her at the Quokka bakery")
HANDED = Person("handed", "Bartholomew Vantongeren", "(555) 309-4826", "Brother drives a teal Buick")
REVOKED = Person("revoked", "Ondine Marchetti-Blythe", "(555) 417-6053", "Ask for Auntie Philomena")
WAITING = Person("waiting", "Ignatius Pemberton-Shaw", "(555) 523-8164", "Works nights at the Ferris wharf")
EAST_OWN = Person("east", "Cordelia Hawksmoor", "(555) 631-2975", "Lives above the Sycamore laundromat")
PEOPLE = (WORKED, HANDED, REVOKED, WAITING, EAST_OWN)
NORTH_AND_PROVIDER = (WORKED, HANDED, REVOKED, WAITING)  # everyone East neither sent nor received

ALL_SECRETS = tuple(s for p in PEOPLE for s in p.secrets)
NO_SUCH_ID = uuid.UUID("00000000-0000-4000-8000-00000000beef")

# Several uuid parameters in one rule: at most this many combinations (sampled, fixed seed).
MAX_COMBINATIONS = 60


@dataclass
class Crawled:
    """The populated world: the users, and the real ids the crawler substitutes."""

    world: World
    referrals: dict[str, uuid.UUID]  # person key → referral id (plus "handed_child")
    referral_ids: list[uuid.UUID]
    consent_ids: list[uuid.UUID]
    user_ids: list[uuid.UUID]
    org_ids: list[uuid.UUID]
    attempt_ids: list[uuid.UUID]
    zone_ids: list[uuid.UUID]

    def ids_named(self, parameter: str) -> list[uuid.UUID]:
        """The ids a parameter's name suggests (`referral_id` → referral ids); the whole pool otherwise."""
        for word, ids in (("referral", self.referral_ids), ("consent", self.consent_ids), ("user", self.user_ids),
                          ("worker", self.user_ids), ("org", self.org_ids), ("attempt", self.attempt_ids),
                          ("contact", self.attempt_ids), ("zone", self.zone_ids)):
            if word in parameter:
                return [*ids, NO_SUCH_ID]
        return self.pool

    @property
    def personal_ids(self) -> set[uuid.UUID]:
        """The ids of rows about a person: referrals, consents, contact attempts."""
        return {*self.referral_ids, *self.consent_ids, *self.attempt_ids}

    @property
    def pool(self) -> list[uuid.UUID]:
        ids = [*self.referral_ids, *self.consent_ids, *self.user_ids, *self.org_ids, *self.attempt_ids,
               *self.zone_ids, NO_SUCH_ID]
        return list(dict.fromkeys(ids))


def _referral_id(response) -> uuid.UUID:
    assert response.status_code == 303, response.get_data(as_text=True)
    return uuid.UUID(response.location.rsplit("/", 1)[1])


def _send(nurse, world: World, person: Person, receiver, recipients, zone: str) -> uuid.UUID:
    data = form(world, **{"person.preferred_name": person.name, "person.phone": person.phone, "note": person.note,
                          "zone": zone, "receiver_org_id": str(receiver.id),
                          "consent.recipient_org_ids": [str(o.id) for o in recipients]})
    return _referral_id(send(nurse, data))


def build_crawled(app) -> Crawled:
    """The world of tests/referral_world.py, with referrals in every state, made through the web."""
    world = build_world(app)
    nurse = sign_in(app, world.nurse)
    ids = {
        WORKED.key: _send(nurse, world, WORKED, world.north, [world.north], "N1"),
        HANDED.key: _send(nurse, world, HANDED, world.north, [world.north, world.provider], "C1"),
        REVOKED.key: _send(nurse, world, REVOKED, world.north, [world.north], "N1"),
        WAITING.key: _send(nurse, world, WAITING, world.north, [world.north], "N1"),
        EAST_OWN.key: _send(nurse, world, EAST_OWN, world.east, [world.east], "E1"),
    }
    north = sign_in(app, world.north_admin)
    for key in (WORKED.key, HANDED.key, REVOKED.key):
        assert act(north, ids[key], "accept").status_code == 303
    assert act(north, ids[WORKED.key], "contact-attempts", outcome="reached",
               note=WORKED.contact_note).status_code == 303
    assert act(north, ids[HANDED.key], "handoff", receiver_org_id=str(world.provider.id)).status_code == 303
    assert act(nurse, ids[REVOKED.key], "consent/revoke").status_code == 303

    # The values the crawl looks for are the ones the pages really show to those allowed to see them.
    page = north.get(f"/referrals/{ids[WORKED.key]}").get_data(as_text=True)
    for secret in WORKED.secrets:
        if secret != WORKED.phone:  # stored and shown normalized (E.164)
            assert secret in page, secret
    east_page = sign_in(app, world.east_admin).get(f"/referrals/{ids[EAST_OWN.key]}").get_data(as_text=True)
    assert EAST_OWN.name in east_page and EAST_OWN.e164 in east_page

    with app.app_context():
        db = get_session()
        child = db.scalar(select(Referral.id).where(Referral.parent_id == ids[HANDED.key]))
        assert child is not None
        ids["handed_child"] = child
        crawled = Crawled(
            world=world, referrals=ids,
            referral_ids=list(db.scalars(select(Referral.id).order_by(Referral.id))),
            consent_ids=list(db.scalars(select(Consent.id).order_by(Consent.id))),
            user_ids=list(db.scalars(select(User.id).order_by(User.id))),
            org_ids=list(db.scalars(select(Organization.id).order_by(Organization.id))),
            attempt_ids=list(db.scalars(select(ContactAttempt.id).order_by(ContactAttempt.id))),
            zone_ids=list(db.scalars(select(Zone.id).order_by(Zone.id))),
        )
    assert len(crawled.referral_ids) == 6 and len(crawled.consent_ids) == 5 and crawled.attempt_ids
    # Publish this month as if the lag had passed, so the police crawl reads real release tables.
    with app.app_context():
        db = get_session()
        released = publish_due(db, app.extensions["portal.catalog"], utcnow() + timedelta(days=75))
        assert released and released[-1].tables
    return crawled


@pytest.fixture
def crawled(app) -> Crawled:
    return build_crawled(app)


# -- the crawler ----------------------------------------------------------------------------------
@dataclass
class Hit:
    method: str
    path: str  # with the query string, if any
    endpoint: str
    status: int
    body: str
    location: str
    headers: str
    ids: tuple[uuid.UUID, ...]  # the ids the request carried (path parameters, or in a followed link)
    routed: bool  # False when the path has no rule for this method (a 405 before any view)
    rule: str | None = None  # the url_map rule it was built from; None for a link found on a page


@dataclass
class Crawl:
    hits: list[Hit] = field(default_factory=list)
    relogins: list[str] = field(default_factory=list)

    def where(self, predicate) -> list[str]:
        return [f"{h.method} {h.path} [{h.endpoint}] → {h.status}" for h in self.hits if predicate(h)]


def _values_for(rule, crawled: Crawled) -> list[tuple[dict, tuple[uuid.UUID, ...]]]:
    """Ways to fill the rule's path parameters: one parameter takes every id of the pool; several
    take every pairing of the ids their names suggest (referral_id → referrals, …) plus a fixed
    sample of any ids at all, at most MAX_COMBINATIONS of those."""
    names = sorted(rule.arguments)
    if not names:
        return [({}, ())]
    pool = crawled.pool

    def choices(name: str, typed: bool) -> list:
        converter = rule._converters[name]
        if isinstance(converter, IntegerConverter):
            return [1, 0]
        ids = crawled.ids_named(name) if typed else pool
        if isinstance(converter, UUIDConverter):
            return ids
        return [*(str(i) for i in ids), "x"]  # strings and paths: the ids as text, and a plain word

    combos = list(itertools.product(*(choices(n, typed=False) for n in names)))
    if len(names) > 1:
        anything = combos if len(combos) <= MAX_COMBINATIONS else \
            random.Random(rule.rule).sample(combos, MAX_COMBINATIONS)
        combos = list(dict.fromkeys([*itertools.product(*(choices(n, typed=True) for n in names)), *anything]))

    def as_uuid(value) -> uuid.UUID | None:
        try:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        except ValueError:
            return None

    return [(dict(zip(names, combo)), tuple(u for u in map(as_uuid, combo) if u is not None)) for combo in combos]


def _token(client) -> str:
    response = client.get("/account")
    match = CSRF_META.search(response.get_data(as_text=True))
    assert match, f"no csrf-token meta on /account ({response.status_code})"
    return match.group(1)


def _signed_in(client) -> bool:
    with client.session_transaction() as session:
        return "_user_id" in session


def _has_csrf_secret(client) -> bool:
    with client.session_transaction() as session:
        return "csrf_token" in session


UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
LINK = re.compile(r'''(?:href|hx-get|src)=["'](/[^"'#\s]*)["']|"(/[^"#\s]*)"''')
MAX_FOLLOWED = 300  # links found on pages, per crawl


def _links(body: str) -> list[str]:
    """Same-site paths in a page (href, hx-get, src) or in a JSON answer (any "/…" string)."""
    return [html.unescape(a or b) for a, b in LINK.findall(body) if not (a or b).startswith("//")]


def crawl(app, crawled: Crawled, user: User | None, visitor_token: bool = False) -> Crawl:
    """Request every rule (but `static`) with GET, then follow the links the pages show, then POST
    to every rule; path parameters from the pool.

    Reads come first, so they see the world as it was built; then the writes. Signed in as
    `user`, a POST carries a valid CSRF token (form field and X-CSRFToken header) and nothing
    else; a visitor's POST carries no token, or with `visitor_token` the one the login page hands
    out. When a request ends the session (POST /logout), the crawler signs in again and notes it,
    so the rest of the crawl still runs as the user.
    """
    client = sign_in(app, user) if user else app.test_client()
    token = _token(client) if user else (csrf_token(client, "/login") if visitor_token else None)
    result = Crawl()
    adapter = app.url_map.bind("localhost")
    rules = sorted((r for r in app.url_map.iter_rules() if r.endpoint != "static"), key=lambda r: (r.rule, r.endpoint))
    planned = {}  # (method, path) → (rule, ids); a path two rules share (GET and POST endpoints) once
    for method in ("GET", "POST"):
        for rule in rules:
            for values, ids in _values_for(rule, crawled):
                planned.setdefault((method, rule.build(values, append_unknown=False)[1]), (rule.rule, ids))
    gets = [(path, rule, ids) for (method, path), (rule, ids) in planned.items() if method == "GET"]
    posts = [(path, rule, ids) for (method, path), (rule, ids) in planned.items() if method == "POST"]
    seen = {path for path, _, _ in gets}
    followed = 0

    def request(method: str, path: str, rule: str | None, ids: tuple) -> None:
        nonlocal token, followed
        try:
            endpoint, routed = adapter.match(path.split("?")[0], method=method)[0], True
        except HTTPException:  # 405: the path answers another method
            endpoint, routed = "", False
        if method == "GET":
            response = client.get(path)
        else:
            response = client.post(path, data={"csrf_token": token} if token else {},
                                   headers={"X-CSRFToken": token} if token else {})
        body = response.get_data(as_text=True)
        result.hits.append(Hit(method, path, endpoint, response.status_code, body,
                               response.headers.get("Location", ""),
                               "\n".join(f"{k}: {v}" for k, v in response.headers.items()), ids, routed, rule))
        if user and not _signed_in(client):
            result.relogins.append(f"{method} {path}")
            assert login(client, user.email).status_code == 302
            token = _token(client)
        elif token and not user and not _has_csrf_secret(client):  # POST /logout cleared the session
            token = csrf_token(client, "/login")
        if method == "GET" and 200 <= response.status_code < 300:
            for link in _links(body):
                if link in seen or link.startswith("/static/") or followed >= MAX_FOLLOWED:
                    continue
                try:
                    adapter.match(link.split("?")[0], method="GET")
                except HTTPException:
                    continue
                seen.add(link)
                followed += 1
                queue.append((link, None, tuple(uuid.UUID(u) for u in UUID_TEXT.findall(link))))

    queue = list(gets)
    while queue:
        request("GET", *queue.pop(0))
    for path, rule, ids in posts:
        request("POST", path, rule, ids)
    return result


def _leaks(result: Crawl, secrets, where: str = "body", echo_ok: bool = False) -> list[str]:
    """Every response whose body (or headers) carries one of the secrets (ids also as bare hex).

    With `echo_ok`, an id the request itself carried may come back (a login redirect's `next=`,
    "no table named …"): it tells the caller nothing it did not send, provided the answer is the
    same for an id that exists nowhere -- which `existence_oracles` proves for the same crawl.
    """
    found = []
    for hit in result.hits:
        text = hit.body if where == "body" else hit.headers
        lowered = text.lower()
        for secret in secrets:
            if echo_ok and secret in hit.ids:
                continue
            needle = str(secret).lower()
            if needle in lowered or (isinstance(secret, uuid.UUID) and secret.hex in lowered):
                found.append(f"{hit.method} {hit.path} [{hit.endpoint}] → {hit.status}: {where} has {secret!s}")
    return found


TOKEN = re.compile(r"[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}")  # a CSRF token: signed, timestamped, new on each page


def _normal(hit: Hit) -> str:
    """The body with the request's own id and the per-page CSRF token taken out."""
    body = TOKEN.sub("{token}", hit.body)
    for each in hit.ids:
        body = re.sub(re.escape(str(each)), "{id}", body, flags=re.I).replace(each.hex, "{id}")
    return body


def existence_oracles(result: Crawl, hidden: set[uuid.UUID]) -> list[str]:
    """Requests carrying a hidden id (a referral, consent or contact attempt the caller has no
    business with) whose answer differs, in status or body, from the answer to the same route with
    an id that exists nowhere: each of them would tell the caller that the row exists."""
    reference = {(h.method, h.rule): h for h in result.hits if h.rule and h.ids == (NO_SUCH_ID,)}
    found = []
    for hit in result.hits:
        ref = reference.get((hit.method, hit.rule))
        if ref is None or len(hit.ids) != 1 or hit.ids[0] not in hidden:
            continue
        if (hit.status, _normal(hit)) != (ref.status, _normal(ref)):
            found.append(f"{hit.method} {hit.path} [{hit.endpoint}] → {hit.status}, "
                         f"but {ref.status} for an id that does not exist")
    return found


def _is_2xx(hit: Hit) -> bool:
    return 200 <= hit.status < 300


# -- nothing changes ------------------------------------------------------------------------------
def snapshot(app) -> dict:
    """Every referral's status and version, every consent's revocation, and the row counts."""
    with app.app_context():
        db = get_session()
        return {
            "referrals": {r.id: (r.status, r.status_reason, r.outcome, r.assigned_to_id, r.version,
                                 r.personal_enc is None, r.note_enc is None) for r in db.scalars(select(Referral))},
            "consents": {c.id: (c.revoked_at, c.revoked_by_id) for c in db.scalars(select(Consent))},
            "counts": {m.__name__: db.scalar(select(func.count()).select_from(m))
                       for m in (Referral, Consent, ContactAttempt, ReferralEvent, Organization, User, Zone)},
        }


def full_snapshot(app) -> dict:
    """The above, plus every account's role and state and every organization's intake."""
    with app.app_context():
        db = get_session()
        return {**snapshot(app),
                "users": {u.id: (u.role, u.active, u.is_portal_admin) for u in db.scalars(select(User))},
                "orgs": {o.id: (o.name, o.kind, o.active, o.intake) for o in db.scalars(select(Organization))}}


# -- the police ------------------------------------------------------------------------------------
# Beyond the list, two things a police account may open, each reviewed, neither about a person:
# - its own organization's administration (Cedar `administration.org-admin-own-organization` and
#   `administration.org-admin-own-users`; the boundary forbids only org.list/create and zones): the
#   police org's page and its new-account form, for the police org's own id and no other;
# - the API's description, the same static OpenAPI document for every signed-in account.
OWN_ORG_ADMINISTRATION = (Action.ORG_VIEW, Action.USER_CREATE)
SAME_FOR_EVERYONE = {"api.openapi"}


def police_may_answer_2xx(app, hit: Hit, police: User) -> bool:
    """Public pages, the home page, one's own account (and its second factor), aggregate tables (and the
    two above): nothing else."""
    view = app.view_functions[hit.endpoint]
    action = declared_action(view)
    if is_public(view) or action in (Action.AGGREGATE_VIEW, Action.ACCOUNT_VIEW_SELF, Action.ACCOUNT_MANAGE_MFA,
                                     Action.ACCOUNT_STEP_UP):
        return True
    if hit.path == "/" or hit.endpoint in SAME_FOR_EVERYONE:
        return True
    return action in OWN_ORG_ADMINISTRATION and hit.ids == (police.organization_id,)


def test_police_crawl_sees_no_person_and_changes_nothing(app, crawled):
    """Police see aggregates only: on every route, with every id, no 2xx beyond the home page, their
    own account, public pages and aggregate tables; the answer for a referral, consent or contact
    attempt is the answer for an id that exists nowhere; no body carries a referral id, a consent id
    or a person's details; no header carries a referral id; and no POST changes anything."""
    before = full_snapshot(app)
    result = crawl(app, crawled, crawled.world.police_staff)

    assert len(result.hits) > 1000 and any(_is_2xx(h) and h.endpoint == "home.index" for h in result.hits)
    police = crawled.world.police_staff
    wrongly_open = result.where(lambda h: _is_2xx(h) and not police_may_answer_2xx(app, h, police))
    assert wrongly_open == [], "\n".join(wrongly_open)
    assert result.where(lambda h: not 200 <= h.status < 500) == []
    oracles = existence_oracles(result, crawled.personal_ids)
    assert oracles == [], "\n".join(oracles)
    leaks = _leaks(result, [*sorted(crawled.personal_ids), *ALL_SECRETS], echo_ok=True)
    assert leaks == [], "\n".join(leaks)
    header_leaks = _leaks(result, crawled.referral_ids, where="headers", echo_ok=True)
    assert header_leaks == [], "\n".join(header_leaks)
    assert full_snapshot(app) == before


# -- the city office and the portal administrator -------------------------------------------------
@pytest.mark.parametrize("who", ["city_staff", "portal_admin"])
def test_city_office_and_portal_admin_crawl_read_no_referral(app, crawled, who):
    """The city office and a portal admin have pages of their own, but no route shows them a person's
    details, no route with a referral's id answers 2xx, and the answer for a referral, consent or
    contact attempt is the answer for an id that exists nowhere (administration is not access).
    The city office's POSTs change nothing at all; the admin's change no referral and no consent."""
    before = snapshot(app)
    result = crawl(app, crawled, getattr(crawled.world, who))

    assert len(result.hits) > 1000 and any(_is_2xx(h) and h.endpoint == "home.index" for h in result.hits)
    opened = result.where(lambda h: _is_2xx(h) and set(h.ids) & set(crawled.referral_ids))
    assert opened == [], "\n".join(opened)
    assert result.where(lambda h: not 200 <= h.status < 500) == []
    oracles = existence_oracles(result, crawled.personal_ids)
    assert oracles == [], "\n".join(oracles)
    leaks = _leaks(result, ALL_SECRETS)
    assert leaks == [], "\n".join(leaks)
    if who == "city_staff":
        assert snapshot(app) == before
    else:  # the admin's empty forms may change accounts, never a referral or a consent
        after = snapshot(app)
        assert (after["referrals"], after["consents"]) == (before["referrals"], before["consents"])


# -- another CVI team ----------------------------------------------------------------------------
def test_other_cvi_team_crawl_sees_only_its_own_referral(app, crawled):
    """A CVI team sees referrals addressed to it, never those of another team or its handoffs: no
    route answers 2xx for a referral it neither sent nor received, no body carries such a referral's
    details or ids, and the answer for its ids is the answer for an id that exists nowhere."""
    theirs = {crawled.referrals[EAST_OWN.key]}
    others = set(crawled.referral_ids) - theirs
    result = crawl(app, crawled, crawled.world.east_admin)

    seen_own = [h for h in result.hits if _is_2xx(h) and h.ids == tuple(theirs) and EAST_OWN.name in h.body]
    assert seen_own, "the crawl never reached East's own referral: the negative checks would prove nothing"
    opened = result.where(lambda h: _is_2xx(h) and set(h.ids) & others)
    assert opened == [], "\n".join(opened)
    assert result.where(lambda h: not 200 <= h.status < 500) == []
    leaks = _leaks(result, [s for p in NORTH_AND_PROVIDER for s in p.secrets])
    assert leaks == [], "\n".join(leaks)
    with app.app_context():
        own_consent = get_session().get(Referral, crawled.referrals[EAST_OWN.key]).consent_id
    hidden = crawled.personal_ids - theirs - {own_consent}
    id_leaks = _leaks(result, sorted(hidden), echo_ok=True)
    assert id_leaks == [], "\n".join(id_leaks)
    oracles = existence_oracles(result, hidden)
    assert oracles == [], "\n".join(oracles)


# -- a visitor -----------------------------------------------------------------------------------
@pytest.mark.parametrize("with_token", [False, True], ids=["no-token", "login-page-token"])
def test_visitor_crawl_is_sent_to_login(app, crawled, with_token):
    """Signed out, every non-public route answers GET with a redirect to /login (401 for JSON) and
    POST with 400 or 401 without a token -- and with the login page's token, a redirect to /login or
    401 -- whatever the id, with the same answer for a real id as for one that exists nowhere; no
    body carries a person's details or an id not in the request, and nothing changes."""
    before = full_snapshot(app)
    result = crawl(app, crawled, None, visitor_token=with_token)

    def to_login(hit: Hit) -> bool:
        return hit.status == 302 and hit.location.startswith("/login") or hit.status == 401

    def allowed(hit: Hit) -> bool:
        if not hit.routed:  # no rule for this method on this path: routing answers before any view
            return hit.status == 405
        if is_public(app.view_functions[hit.endpoint]):
            return True
        if hit.method == "GET" or with_token:
            return to_login(hit)
        return hit.status in (400, 401)

    assert len(result.hits) > 1000
    wrong = result.where(lambda h: not allowed(h))
    assert wrong == [], "\n".join(wrong)
    oracles = existence_oracles(result, crawled.personal_ids)
    assert oracles == [], "\n".join(oracles)
    leaks = _leaks(result, [*crawled.referral_ids, *crawled.consent_ids, *ALL_SECRETS], echo_ok=True)
    assert leaks == [], "\n".join(leaks)
    assert full_snapshot(app) == before

