"""The clients of bench/faults.py: signed-in browsers driving two portal instances over loopback.

Each client signs in as a person does (password, then a TOTP code), keeps its cookies itself
(production cookies are `Secure` and `__Host-`, which a cookie jar would not send over http),
and records every response with its outcome:

- success: 2xx or 3xx;
- clear: a 4xx with a body (409 conflict, 404, 422 ...), or a 503 with a page saying why;
- bad: any other 5xx, an empty error, or a stack trace in a body;
- connection: refused or reset before an answer; tried once more on the other instance, as a
  load balancer would.
"""
from __future__ import annotations

import http.client
import json
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlencode, urlsplit

import pyotp

CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
REFERRAL_LINK = re.compile(r'href="/referrals/([0-9a-f-]{36})"')
TRACE = "Traceback (most recent call last)"
STEP = 30  # seconds per TOTP code (portal/auth/mfa.py)


def outcome_of(status: int | None, body: str) -> str:
    if status is None:
        return "connection"
    if TRACE in body:
        return "bad"
    if 200 <= status < 400:
        return "success"
    if (400 <= status < 500 or status == 503) and body.strip():
        return "clear"
    return "bad"


@dataclass
class Record:
    at: float  # when the request was sent
    ended: float  # when its answer (or its connection error) came
    client: str
    action: str
    port: int
    status: int | None
    outcome: str
    referral_id: str | None = None
    error: str | None = None


class Recorder:
    """Every response of every client, in the order they arrived."""

    def __init__(self):
        self.records: list[Record] = []
        self._lock = threading.Lock()

    def add(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)


@dataclass
class Reply:
    status: int
    body: str
    location: str | None
    port: int

    @property
    def path(self) -> str:
        return urlsplit(self.location or "").path


class Browser:
    """One signed-in person's cookies and CSRF token, sending requests to either instance."""

    def __init__(self, name: str, ports: list[int], recorder: Recorder, timeout: float = 30):
        self.name, self.ports, self.recorder, self.timeout = name, ports, recorder, timeout
        self.cookies: dict[str, str] = {}
        self.csrf: str | None = None
        self._turn = random.randrange(len(ports))

    def get(self, path: str, action: str, **kw) -> Reply | None:
        return self.send("GET", path, action, **kw)

    def post_form(self, path: str, action: str, form: dict, **kw) -> Reply | None:
        body = urlencode({**form, "csrf_token": self.csrf}, doseq=True)
        return self.send("POST", path, action, body=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, **kw)

    def post_json(self, path: str, action: str, data: dict, headers: dict | None = None, **kw) -> Reply | None:
        return self.send("POST", path, action, body=json.dumps(data),
                         headers={"Content-Type": "application/json", "Accept": "application/json",
                                  "X-CSRFToken": self.csrf or "", **(headers or {})}, **kw)

    def send(self, method: str, path: str, action: str, body: str | None = None, headers: dict | None = None,
             referral_id: str | None = None) -> Reply | None:
        """One request; on a refused or reset connection, once more on the other instance."""
        self._turn += 1
        order = [self.ports[(self._turn + i) % len(self.ports)] for i in range(len(self.ports))]
        for port in order[:2]:
            started = time.monotonic()
            try:
                reply = self._once(port, method, path, body, headers or {})
            except (OSError, http.client.HTTPException) as error:  # refused, reset, closed early
                self.recorder.add(Record(started, time.monotonic(), self.name, action, port, None, "connection",
                                         referral_id, type(error).__name__))
                continue
            self.recorder.add(Record(started, time.monotonic(), self.name, action, port, reply.status,
                                     outcome_of(reply.status, reply.body), referral_id))
            token = CSRF.search(reply.body)
            if token:
                self.csrf = token.group(1)
            return reply
        return None

    def _once(self, port: int, method: str, path: str, body: str | None, headers: dict) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        try:
            if self.cookies:
                headers = {**headers, "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            for header in response.msg.get_all("Set-Cookie") or []:
                self._keep(header)
            return Reply(response.status, text, response.getheader("Location"), port)
        finally:
            conn.close()

    def _keep(self, header: str) -> None:
        try:
            cookie = SimpleCookie()
            cookie.load(header)
        except CookieError:
            return
        for name, morsel in cookie.items():
            if morsel["max-age"] == "0" or "1970" in morsel["expires"]:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value


class TotpClock:
    """Fresh codes per account: each sign-in needs a later time step than the last one used (the
    portal refuses a replayed step), and a step counts from one before now to one after."""

    def __init__(self, secret: str):
        self.totp = pyotp.TOTP(secret, interval=STEP)
        self.last: dict[str, int] = {}
        self._lock = threading.Lock()

    def code(self, email: str) -> str:
        with self._lock:
            while True:
                clock = time.time()
                now = int(clock) // STEP
                earliest = now - 1 if STEP - clock % STEP > 3 else now
                step = max(earliest, self.last.get(email, -1) + 1)
                if step <= now + 1:
                    self.last[email] = step
                    return self.totp.generate_otp(step)
                time.sleep(STEP - clock % STEP + 0.05)


class SignInFailed(Exception):
    pass


def sign_in(browser: Browser, email: str, password: str, clock: TotpClock) -> None:
    """Password, then a TOTP code, through the real forms."""
    browser.get("/login", "sign in")
    reply = browser.post_form("/login", "sign in", {"email": email, "password": password})
    if reply is None or reply.path != "/login/code":
        raise SignInFailed(f"{email}: password step answered {reply and reply.status} {reply and reply.location}")
    browser.get("/login/code", "sign in")
    reply = browser.post_form("/login/code", "sign in", {"code": clock.code(email)})
    if reply is None or reply.status != 302 or reply.path.startswith("/login"):
        raise SignInFailed(f"{email}: code step answered {reply and reply.status} {reply and reply.location}")
    browser.get("/", "home")  # a page, for the CSRF token


# -- what the clients do ---------------------------------------------------------------------------
@dataclass
class Shared:
    """What the clients know of each other's work: the referrals created and accepted."""

    north_id: str
    provider_id: str
    created: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, referral_id: str) -> None:
        with self.lock:
            getattr(self, kind).append(referral_id)

    def recent(self, kind: str, n: int, rng: random.Random) -> str | None:
        """One of the `n` newest: several clients pick the same one, which is the point."""
        with self.lock:
            pool = getattr(self, kind)[-n:]
        return rng.choice(pool) if pool else None


def referral_fields(shared: Shared, rng: random.Random) -> dict:
    """A referral as the JSON API takes it, to the North team, consent naming the provider too."""
    return {
        "receiver_org_id": shared.north_id, "zone": rng.choice(["N1", "N2", "C1"]),
        "person": {"preferred_name": f"Bench Person {rng.randrange(10**6)}", "phone": "+15550100199",
                   "safe_to_text": True},
        "age_band": rng.choice(["under_18", "18_24", "25_34", "35_plus"]),
        "reason": rng.choice(["gunshot_wound", "stab_wound", "assault"]),
        "services": ["intensive_mentoring"], "urgency": rng.choice(["routine", "urgent"]), "note": "bench",
        "consent": {"method": "verbal", "recipient_org_ids": [shared.north_id, shared.provider_id],
                    "data_categories": ["contact", "note"],
                    "expires_on": (date.today() + timedelta(days=60)).isoformat()},
    }


def as_form(data: dict, referral_id: str) -> dict:
    """The same referral as the HTML form posts it."""
    person, consent = data["person"], data["consent"]
    return {"referral_id": referral_id, "consent.given": "yes", "receiver_org_id": data["receiver_org_id"],
            "person.preferred_name": person["preferred_name"], "person.phone": person["phone"],
            "person.safe_to_text": "yes", "age_band": data["age_band"], "zone": data["zone"],
            "reason": data["reason"], "services": data["services"], "urgency": data["urgency"],
            "note": data["note"], "consent.method": consent["method"],
            "consent.recipient_org_ids": consent["recipient_org_ids"],
            "consent.data_categories": consent["data_categories"], "consent.expires_on": consent["expires_on"]}


RETRIES = 4  # a create whose answer was lost is sent again with the same id: it cannot double


def create_by_form(browser: Browser, shared: Shared, rng: random.Random, creates: dict) -> None:
    referral_id = str(uuid.uuid4())
    browser.get("/referrals/new", "open the form")
    form = as_form(referral_fields(shared, rng), referral_id)
    for _ in range(RETRIES):
        reply = browser.post_form("/referrals/new", "create (form)", form, referral_id=referral_id)
        creates.setdefault(referral_id, []).append(reply.status if reply else None)
        if reply is not None and reply.status == 303:
            shared.add("created", referral_id)
            return
        if reply is not None and 400 <= reply.status < 500:
            return
        time.sleep(0.2)


def create_by_api(browser: Browser, shared: Shared, rng: random.Random, creates: dict) -> None:
    referral_id = str(uuid.uuid4())
    data = referral_fields(shared, rng)
    for _ in range(RETRIES):
        reply = browser.post_json("/api/v1/referrals", "create (api)", data, {"Idempotency-Key": referral_id},
                                  referral_id=referral_id)
        creates.setdefault(referral_id, []).append(reply.status if reply else None)
        if reply is not None and reply.status in (200, 201):
            shared.add("created", referral_id)
            return
        if reply is not None and 400 <= reply.status < 500:
            return
        time.sleep(0.2)


def hospital(browser: Browser, shared: Shared, rng: random.Random, creates: dict, api: bool) -> None:
    roll = rng.random()
    if roll < 0.7:
        (create_by_api if api else create_by_form)(browser, shared, rng, creates)
    elif roll < 0.85:
        referral_id = shared.recent("created", 30, rng)
        if referral_id:
            browser.post_form(f"/referrals/{referral_id}/consent/revoke", "revoke consent", {},
                              referral_id=referral_id)
    elif api:
        browser.get("/api/v1/referrals?box=sent", "sent list (api)")
    else:
        browser.get("/referrals/sent", "sent list")


def cvi_worker(browser: Browser, shared: Shared, rng: random.Random, accepts: dict) -> None:
    roll = rng.random()
    if roll < 0.3:
        browser.get("/referrals/inbox", "inbox")
    elif roll < 0.8:
        referral_id = shared.recent("created", 6, rng)
        if referral_id:
            reply = browser.post_form(f"/referrals/{referral_id}/accept", "accept", {}, referral_id=referral_id)
            if reply is not None and reply.status == 303:
                accepts.setdefault(referral_id, []).append(browser.name)
                shared.add("accepted", referral_id)
    else:
        referral_id = shared.recent("accepted", 6, rng)
        if referral_id:
            browser.post_form(f"/referrals/{referral_id}/handoff", "hand off",
                              {"receiver_org_id": shared.provider_id}, referral_id=referral_id)


def city(browser: Browser, shared: Shared, rng: random.Random) -> None:
    browser.get(rng.choice(["/dashboards/city", "/dashboards/city?period=month",
                            "/dashboards/city?zone=N1&urgency=urgent"]), "dashboard")


def police(browser: Browser, shared: Shared, rng: random.Random) -> None:
    browser.get(rng.choice(["/aggregates/", "/aggregates/referrals_per_month",
                            "/aggregates/referrals_per_quarter_by_zone",
                            "/api/v1/aggregates/outcomes_per_quarter"]), "aggregates")


def run_client(step, deadline: float, seed: int) -> None:
    """Call `step(rng)` until the deadline, with a short pause like a person's (or a poll's)."""
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        step(rng)
        time.sleep(rng.uniform(0, 0.03))
