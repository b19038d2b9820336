"""One referral's life, simulated from its own seeded random stream, as rows ready to COPY.

The shapes follow portal/demo_history.py (the real services' rules) at city scale: a hospital
program sends to the CVI team serving the zone, most referrals are accepted within hours, the
first contact usually lands within two days, some are declined or cancelled, some are handed
off to a service provider the consent names, a few consents are revoked by the person.

Retention is part of the story: `portal retention run` ran nightly until `retention_ran`, so a
consent that expired before then has ended (open referrals under it were revoked), and every
referral it covered, or that was closed longer than the retention period before then, has had
its personal fields shredded. What expired or aged out after `retention_ran` is still waiting:
that is the backlog the benchmark's retention run purges.

Personal fields that still exist are sealed with the portal's own functions (vault.seal and
vault.seal_contact_note): a data key per referral, wrapped by the KEK ring. Audit events are
emitted as the web layer would write them (a gate decision per request, a record per personal
field category read), but only from `audit_start` on: the log begins when the audit went live.
"""
from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace

from portal.audit.log import canonical_json
from portal.referrals import codes, vault

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
OPEN = set(codes.OPEN_STATUSES)

FIRST = ["Jay", "Marcus", "Dee", "Tavon", "Luis", "Keisha", "Andre", "Rosa", "Malik", "Tiana", "Jamal", "Ana",
         "DeShawn", "Carlos", "Imani", "Terrell", "Jasmine", "Miguel", "Aaliyah", "Darius", "Nia", "Jose"]
LAST = ["W.", "R.", "T.", "M.", "K.", "J.", "P.", "S.", "B.", "D.", "G.", "H."]
NOTES = ["Prefers a call after school hours.", "Lives with his aunt; call her first.", "Discharged to home.",
         "Asked for someone who speaks Spanish.", "Worried about going back to the block.",
         "Brother was hurt last year.", "Open to mentoring; not to group sessions."]
CONTACT_NOTES = ["Left message with mother.", "Number rang out.", "Met at the house.", "Will call back Friday.",
                 "Text sent, no reply yet.", "Talked for ten minutes; meeting set."]
POLICY = {"send": "referrals.exchange-partners-send", "list": "referrals.exchange-partners-list",
          "sender_reads": "referrals.sender-follows-status", "receiver_reads": "referrals.receiver-reads-team-work",
          "work": "referrals.receiver-works-the-referral", "revoke": "referrals.sender-cancels-or-records-revocation"}
ROW_READ = canonical_json({"fields": ["preferred_name"]})
LIST_ROW = "list row"  # an inbox row: recorded as referral.view_contact of the name
EMPTY = canonical_json({})


@dataclass
class World:
    """Everything a simulation needs to know about the city; plain data, sent to worker processes."""

    now: datetime
    start: datetime
    retention_ran: datetime  # nightly retention ran up to this moment, and not since
    retention_days: int
    audit_start: datetime
    zones: list  # [(zone id, weight)]
    team_of_zone: dict  # zone id → CVI team id
    providers_of_zone: dict  # zone id → [service provider ids]
    hospitals: list  # [(org id, weight)]
    staff: dict  # org id → [user ids] (front-line workers, nurses)
    leads: dict  # org id → [user ids] (supervisors, org admins)
    growth: float = 0.3  # the last day sees this much more referrals than the first


@dataclass
class Rows:
    """Rows per table, in the column order of generate.COLUMNS."""

    consents: list = field(default_factory=list)
    recipients: list = field(default_factory=list)
    referrals: list = field(default_factory=list)
    services: list = field(default_factory=list)
    events: list = field(default_factory=list)
    attempts: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    audit: list = field(default_factory=list)


def nightly(t: datetime) -> datetime:
    """The first nightly run (03:00 UTC) at or after t."""
    run = t.replace(hour=3, minute=0, second=0, microsecond=0)
    return run if run >= t else run + DAY


def created_at(world: World, index: int, count: int, rng: random.Random) -> datetime:
    """Referral `index` of `count`, in time order; later months are busier (linear growth)."""
    u = (index + rng.random()) / count
    g = world.growth
    x = (-1 + math.sqrt(1 + 2 * g * u * (1 + g / 2))) / g if g else u
    return world.start + (world.now - HOUR - world.start) * x


def lognormal_hours(rng: random.Random, median: float, sigma: float, low: float, high: float) -> timedelta:
    return timedelta(hours=min(high, max(low, median * math.exp(rng.gauss(0, sigma)))))


def _weighted(rng: random.Random, pairs):
    return rng.choices([p[0] for p in pairs], [p[1] for p in pairs])[0]


def _id(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


class Case:
    """One referral: its state, history, attempts and personal fields, as the services leave them."""

    def __init__(self, sim: Simulation, rid, created, sender, creator, receiver, consent, parent=None,
                 person=None, note=None, base=None):
        self.sim, self.id, self.created, self.sender, self.creator, self.receiver = sim, rid, created, sender, \
            creator, receiver
        self.consent, self.parent = consent, parent
        self.status, self.status_reason, self.outcome = "sent", None, None
        self.accepted_at = self.first_contact_at = self.closed_at = self.purged_at = None
        self.assigned_to, self.updated_at, self.version = None, created, 1
        self.person, self.note = person, note
        self.base = base  # zone, urgency, age band, reason, services
        self.events = [(created, creator, sender, None, "sent", None)]
        self.attempts = []  # [id, at, worker, outcome, note]
        self.children: list[Case] = []

    # -- the services' effects ---------------------------------------------------------------
    def move(self, t, to, actor, org, reason=None):
        self.events.append((t, actor, org, self.status, to, reason))
        self.status = to
        self.status_reason = reason if to in ("declined", "cancelled", "on_hold", "revoked") else None
        if to == "accepted":
            self.accepted_at = t
            self.assigned_to = self.assigned_to or actor
        if to in codes.CLOSED_STATUSES:
            self.closed_at = t
        self.updated_at, self.version = t, self.version + 1

    def contact(self, t, worker, outcome, note):
        self.attempts.append((self.sim.new_id(), t, worker, outcome, note))
        self.updated_at, self.version = t, self.version + 1
        if outcome == "reached" and self.first_contact_at is None:
            self.first_contact_at = t
        if outcome == "reached" and self.status == "accepted":
            self.move(t, "in_progress", worker, self.receiver)

    def shred(self, t):
        if self.purged_at is None:
            self.purged_at = t


class Simulation:
    """Simulates referrals one by one into `rows`; personal fields sealed with `ring`."""

    def __init__(self, world: World, ring, seed: int, rows: Rows):
        self.world, self.ring, self.seed, self.rows = world, ring, seed, rows
        self.rng = random.Random()
        self.audit_key = 0

    def new_id(self) -> uuid.UUID:
        return _id(self.rng)

    # -- audit events, as the web layer writes them ------------------------------------------
    def request(self, t, actor, org, action, resource_id, allowed=True, policy="", reads=(), detail=EMPTY):
        """One request: the gate's decision, then one record per personal category read."""
        w = self.world
        if not w.audit_start <= t <= w.now:
            return
        request_id = f"{self.rng.getrandbits(64):016x}"
        rtype = "Referral" if resource_id else "Portal"
        rid = str(resource_id) if resource_id else None
        self.audit_key += 1
        self.rows.audit.append((t, self.key, self.audit_key, actor, org, action, rtype, rid,
                                "allow" if allowed else "deny", policy, request_id, detail))
        for read in reads:
            self.audit_key += 1
            row = read == LIST_ROW  # a list row decrypts the name only
            self.rows.audit.append((t, self.key, self.audit_key, actor, org, "referral.view_contact" if row else read,
                                    "Referral", rid, "allow", "", request_id, ROW_READ if row else EMPTY))

    def receiver_reads(self, t, case: Case, actor, action="referral.view_status", policy=None):
        """A receiver opening the referral page: the gate, then the personal categories it decrypts."""
        readable = case.purged_at is None and case.consent.revoked_at is None
        reads = ()
        if readable:
            reads = ("referral.view_contact", "referral.view_contact_log") + \
                (("referral.view_notes",) if case.note else ())
        self.request(t, actor, case.receiver, action, case.id, policy=policy or POLICY["receiver_reads"],
                     reads=tuple(sorted(reads)))

    # -- one referral sent by a hospital program, and whatever it leads to -------------------
    def referral(self, index: int, count: int) -> None:
        w, rng = self.world, self.rng
        rng.seed((self.seed << 40) | index)
        self.key = index
        created = created_at(w, index, count, rng)
        zone = _weighted(rng, w.zones)
        team = w.team_of_zone[zone]
        hospital = _weighted(rng, w.hospitals)
        nurse = rng.choice(w.staff[hospital])
        providers = w.providers_of_zone.get(zone, [])
        recipients = [team] + ([rng.choice(providers)] if providers and rng.random() < 0.35 else [])
        categories = "contact note" if rng.random() < 0.9 else "contact"
        days = _weighted(rng, ((90, 70), (180, 20), (365, 10)))
        obtained = created - timedelta(minutes=rng.randint(5, 90))
        consent = SimpleNamespace(id=self.new_id(), method=_weighted(rng, (("verbal", 55), ("written", 35),
                                                                           ("electronic", 10))),
                                  obtained_by=nurse, obtained_at=obtained, categories=categories,
                                  expires_at=obtained + timedelta(days=days), revoked_at=None, revoked_by=None,
                                  recipients=recipients, created=created)
        person = {"preferred_name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                  "phone": f"+1555{rng.randint(2000000, 9999999)}",
                  "best_time": rng.choice(["mornings", "after 3pm", "evenings", None]),
                  "language": rng.choice(["English", "English", "Spanish", None]),
                  "safe_to_text": rng.random() < 0.7, "safe_voicemail": rng.random() < 0.4,
                  "code_word": rng.choice(["bluebird", None, None, None])}
        note = rng.choice(NOTES) if rng.random() < 0.4 else None
        urgent = rng.random() < 0.3
        base = (zone, "urgent" if urgent else "routine",
                _weighted(rng, (("under_18", 25), ("18_24", 40), ("25_34", 22), ("35_plus", 13))),
                _weighted(rng, (("gunshot_wound", 45), ("stab_wound", 25), ("assault", 20),
                                ("other_violent_injury", 10))),
                sorted(rng.sample(list(codes.SERVICES), rng.randint(1, 3))))
        case = Case(self, self.new_id(), created, hospital, nurse, team, consent, person=person, note=note,
                    base=base)
        self.request(created, nurse, hospital, "referral.create", None, policy=POLICY["send"])
        self.request(created + timedelta(seconds=1), nurse, hospital, "referral.view_status", case.id,
                     policy=POLICY["sender_reads"])
        expiry_run = nightly(consent.expires_at)
        self.stop = expiry_run if expiry_run <= w.retention_ran else w.now
        self.work(case, rng.random())
        self.retention(case)
        for each in [case, *case.children]:
            self.emit(each)

    def ok(self, t) -> bool:
        return t <= self.stop

    def work(self, case: Case, fate: float) -> None:
        w, rng = self.world, self.rng
        team, t = case.receiver, case.created
        workers = w.staff[team]
        for _ in range(rng.choice((1, 1, 2, 3))):  # the team sees it in the inbox
            seen = t + timedelta(minutes=rng.uniform(1, 240))
            if self.ok(seen):
                self.request(seen, rng.choice(workers), team, "referral.list_inbox", None, policy=POLICY["list"],
                             reads=(LIST_ROW,))
        if rng.random() < 0.01:  # someone of another team tries the link: denied, and logged
            other = rng.choice([o for o in w.team_of_zone.values() if o != team] or [team])
            self.request(t + timedelta(hours=rng.uniform(1, 100)), rng.choice(w.staff[other]), other,
                         "referral.view_status", case.id, allowed=False)
        t += lognormal_hours(rng, 4, 1.1, 0.2, 120)
        if not self.ok(t):
            return
        worker = rng.choice(workers)
        if fate < 0.07:
            case.move(t, "declined", worker, team, rng.choice(list(codes.DECLINE_REASONS)))
            self.request(t, worker, team, "referral.decline", case.id, policy=POLICY["work"])
            return
        if fate < 0.11:
            case.move(t, "cancelled", case.creator, case.sender, rng.choice(list(codes.CANCEL_REASONS)))
            self.request(t, case.creator, case.sender, "referral.cancel", case.id, policy=POLICY["revoke"])
            return
        case.move(t, "accepted", worker, team)
        self.request(t, worker, team, "referral.accept", case.id, policy=POLICY["work"])
        self.receiver_reads(t + timedelta(seconds=1), case, worker)
        reached = False
        for _ in range(_weighted(rng, ((0, 45), (1, 30), (2, 15), (3, 10)))):
            t += lognormal_hours(rng, 20, 0.8, 1, 96)
            if not self.ok(t):
                return
            self.log_contact(case, t, worker, rng.choice(("no_answer", "left_message", "no_answer", "wrong_number")))
        if rng.random() < 0.85:
            t += lognormal_hours(rng, 18, 0.9, 0.5, 120)
            if not self.ok(t):
                return
            self.log_contact(case, t, worker, "reached")
            reached = True
        if 0.11 <= fate < 0.15:  # the person withdraws consent; the hospital records it
            t += timedelta(days=rng.uniform(1, 10))
            if self.ok(t):
                self.revoke(case, t, case.creator, case.sender)
            return
        providers = [o for o in case.consent.recipients if o != team]
        if 0.15 <= fate < 0.29 and providers and case.status == "in_progress":
            t += timedelta(days=rng.uniform(1, 10))
            if not self.ok(t):
                return
            self.handoff(case, t, worker, providers[0])
        if case.status == "in_progress" and rng.random() < 0.06:
            t += timedelta(days=rng.uniform(2, 30))
            if not self.ok(t):
                return
            case.move(t, "on_hold", worker, team, rng.choice(list(codes.HOLD_REASONS)))
            self.request(t, worker, team, "referral.hold", case.id, policy=POLICY["work"])
            t += timedelta(days=rng.uniform(3, 21))
            if not self.ok(t):
                return
            case.move(t, "in_progress", worker, team)
            self.request(t, worker, team, "referral.resume", case.id, policy=POLICY["work"])
        for _ in range(rng.choice((0, 1, 1, 2))):  # the sender follows the closed loop
            look = t + timedelta(days=rng.uniform(0.5, 20))
            if self.ok(look):
                self.request(look, case.creator, case.sender, "referral.view_status", case.id,
                             policy=POLICY["sender_reads"])
        t += timedelta(days=rng.uniform(7, 120))
        if not self.ok(t):
            return
        if reached:
            outcome = "engaged" if rng.random() < 0.7 else rng.choice(list(codes.COMPLETION_OUTCOMES))
        else:
            outcome = "unable_to_reach" if rng.random() < 0.8 else rng.choice(list(codes.COMPLETION_OUTCOMES))
        case.move(t, "completed", worker, team, outcome)
        case.outcome = outcome
        self.request(t, worker, team, "referral.complete", case.id, policy=POLICY["work"])

    def log_contact(self, case: Case, t, worker, outcome: str) -> None:
        note = self.rng.choice(CONTACT_NOTES) if self.rng.random() < 0.25 else None
        case.contact(t, worker, outcome, note)
        self.request(t, worker, case.receiver, "referral.log_contact", case.id, policy=POLICY["work"])
        self.receiver_reads(t + timedelta(seconds=1), case, worker)

    def revoke(self, case: Case, t, actor, org) -> None:
        case.consent.revoked_at, case.consent.revoked_by = t, actor
        for each in [case, *case.children]:
            if each.status in OPEN:
                each.move(t, "revoked", actor, org)
            each.shred(t)
        self.request(t, actor, org, "referral.revoke_consent", case.id, policy=POLICY["revoke"])

    def handoff(self, case: Case, t, worker, provider) -> None:
        """The child referral goes to the provider under the same consent, with what it releases."""
        rng = self.rng
        categories = case.consent.categories.split()
        child = Case(self, self.new_id(), t, case.receiver, worker, provider, case.consent, parent=case,
                     person=case.person if "contact" in categories else None,
                     note=case.note if "note" in categories else None, base=case.base)
        case.children.append(child)
        case.events.append((t, worker, case.receiver, case.status, case.status, "handed_off"))
        self.request(t, worker, case.receiver, "referral.handoff", case.id, policy=POLICY["work"])
        staff = self.world.staff[provider]
        t += lognormal_hours(rng, 24, 0.9, 1, 200)
        if not self.ok(t):
            return
        taker = rng.choice(staff)
        if rng.random() < 0.12:
            child.move(t, "declined", taker, provider, rng.choice(list(codes.DECLINE_REASONS)))
            self.request(t, taker, provider, "referral.decline", child.id, policy=POLICY["work"])
            return
        child.move(t, "accepted", taker, provider)
        self.request(t, taker, provider, "referral.accept", child.id, policy=POLICY["work"])
        self.receiver_reads(t + timedelta(seconds=1), child, taker)
        t += timedelta(days=rng.uniform(14, 90))
        if self.ok(t):
            outcome = "engaged" if rng.random() < 0.75 else rng.choice(list(codes.COMPLETION_OUTCOMES))
            child.move(t, "completed", taker, provider, outcome)
            child.outcome = outcome
            self.request(t, taker, provider, "referral.complete", child.id, policy=POLICY["work"])

    def retention(self, case: Case) -> None:
        """What the nightly `portal retention run` did up to `retention_ran`."""
        w = self.world
        consent = case.consent
        expiry_run = nightly(consent.expires_at)
        family = [case, *case.children]
        if consent.revoked_at is None and expiry_run <= w.retention_ran:
            consent.revoked_at = expiry_run  # expiry ends the consent; revoked_by stays empty
            for each in family:
                if each.status in OPEN:
                    each.move(expiry_run, "revoked", None, None, "consent_expired")
                each.shred(expiry_run)
        for each in family:
            if each.status in ("declined", "completed", "cancelled") and each.purged_at is None:
                purge_run = nightly(each.closed_at + timedelta(days=w.retention_days))
                if purge_run <= w.retention_ran:
                    each.shred(purge_run)

    # -- rows --------------------------------------------------------------------------------
    def emit(self, case: Case) -> None:
        rows, rng = self.rows, self.rng
        consent = case.consent
        if case.parent is None:
            rows.consents.append((consent.id, consent.method, consent.obtained_by, consent.obtained_at,
                                  "violence_intervention_services", consent.categories, consent.expires_at,
                                  consent.revoked_at, consent.revoked_by, consent.created))
            rows.recipients.extend((consent.id, org) for org in consent.recipients)
        personal_enc = note_enc = None
        sealed_notes = {}
        if case.purged_at is None:
            stub = SimpleNamespace(id=case.id, data_key=None, personal_enc=None, note_enc=None)
            dek = vault.seal(None, self.ring, stub, case.person, case.note)
            personal_enc, note_enc = stub.personal_enc, stub.note_enc
            rows.keys.append((case.id, stub.data_key.kek_id, stub.data_key.wrapped_key, case.created))
            for attempt_id, _, _, _, text in case.attempts:
                if text:
                    attempt = SimpleNamespace(id=attempt_id, referral_id=case.id, note_enc=None)
                    vault.seal_contact_note(dek, attempt, text)
                    sealed_notes[attempt_id] = attempt.note_enc
        zone, urgency, age_band, reason, services = case.base
        rows.referrals.append((case.id, case.sender, case.receiver, case.creator, case.assigned_to, consent.id,
                               case.parent.id if case.parent else None, case.status, case.status_reason,
                               case.outcome, urgency, zone, age_band, reason, False, personal_enc, note_enc,
                               case.purged_at, case.created, case.accepted_at, case.first_contact_at,
                               case.closed_at, case.updated_at, case.version))
        rows.services.extend((case.id, s) for s in services)
        rows.events.extend((_id(rng), case.id, at, actor, org, before, after, why)
                           for at, actor, org, before, after, why in case.events)
        rows.attempts.extend((attempt_id, case.id, worker, at, outcome, sealed_notes.get(attempt_id))
                             for attempt_id, at, worker, outcome, _ in case.attempts)


def simulate(world: World, ring, seed: int, first: int, last: int, count: int) -> Rows:
    """Referrals first..last-1 of `count`, each from its own random stream (same seed, same history)."""
    rows = Rows()
    simulation = Simulation(world, ring, seed, rows)
    for index in range(first, last):
        simulation.referral(index, count)
    return rows

