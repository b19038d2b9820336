"""Synthetic referral history for development and benchmarks, made through the real services.

Every referral is sent, worked and closed by the same service functions as in production (so it
is encrypted, has its events, contact attempts and consents), with `now` moved back in time.
Identifiers come from the seed, so a re-run skips what an interrupted run already made.
"""
from __future__ import annotations

import random
import uuid
from datetime import timedelta

from sqlalchemy import select

from portal.db import utcnow
from portal.models import Organization, Referral, User
from portal.referrals import codes, service
from portal.referrals.inputs import ConsentInput, ReferralInput

FIRST = ["Jay", "Marcus", "Dee", "Tavon", "Luis", "Keisha", "Andre", "Rosa", "Malik", "Tiana", "Jamal", "Ana"]
LAST = ["W.", "R.", "T.", "M.", "K.", "J.", "P.", "S."]
TEAM_FOR_ZONE = {"N1": ["cvi@demo.test"], "N2": ["cvi@demo.test"], "E1": ["cvi2@demo.test"],
                 "E2": ["cvi2@demo.test"], "C1": ["cvi@demo.test", "cvi2@demo.test"]}


def load_demo_referrals(db, ring, pdp, count: int, seed: int, progress=lambda n: None) -> int:
    """Create up to `count` referrals spread over the past 24 months; returns how many were new."""
    users = {u.email: u for u in db.scalars(select(User).where(User.email.like("%@demo.test")))}
    provider = db.scalar(select(Organization).where(Organization.kind == "service_provider"))
    made = 0
    for index in range(count):
        rng = random.Random(f"{seed}:{index}")
        referral_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        if db.get(Referral, referral_id) is None:
            _one(db, ring, pdp, rng, referral_id, users, provider)
            made += 1
        if index % 25 == 24:
            db.commit()
            progress(25)
    db.commit()
    progress(count % 25)
    return made


def _one(db, ring, pdp, rng, referral_id, users, provider):
    now = utcnow()
    created = now - timedelta(days=rng.uniform(0, 730), minutes=rng.randint(0, 1440))
    zone = rng.choice(sorted(TEAM_FOR_ZONE))
    worker = users[rng.choice(TEAM_FOR_ZONE[zone])]
    nurse = users["hospital@demo.test"]
    recipients = [worker.organization_id] + ([provider.id] if provider and rng.random() < 0.3 else [])
    ctx = service.Context(db, ring, pdp, nurse, created, notify=False)
    consent = ConsentInput(rng.choice(list(codes.CONSENT_METHODS)), recipients, ["contact", "note"],
                           created + timedelta(days=90), created)
    data = ReferralInput(
        receiver_org_id=worker.organization_id,
        person={"preferred_name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                "phone": f"+1555{rng.randint(2000000, 9999999)}", "best_time": rng.choice(["mornings", "after 3pm", None]),
                "language": rng.choice(["English", "Spanish", None]), "safe_to_text": rng.random() < 0.7,
                "safe_voicemail": rng.random() < 0.4, "code_word": None},
        age_band=rng.choices(list(codes.AGE_BANDS), [25, 40, 22, 13])[0], zone=zone,
        reason=rng.choices(list(codes.REASONS), [45, 25, 20, 10])[0],
        services=sorted(rng.sample(list(codes.SERVICES), rng.randint(1, 3))),
        urgency="urgent" if rng.random() < 0.3 else "routine", note=None, consent=consent)
    referral = service.create_referral(ctx, data, referral_id=referral_id)
    _work(ctx, rng, referral, worker, nurse, provider, now)


def _at(ctx, when, actor):
    ctx.now, ctx.actor = when, actor


def _work(ctx, rng, referral, worker, nurse, provider, now):
    age = now - referral.created_at
    fate = rng.random()
    if age < timedelta(days=3) and fate < 0.5:
        return  # still waiting in the inbox
    t = referral.created_at + timedelta(hours=rng.uniform(0.5, 48))
    if fate < 0.08:
        _at(ctx, t, worker)
        service.transition(ctx, referral, "decline", reason=rng.choice(list(codes.DECLINE_REASONS)))
        return
    if fate < 0.12:
        _at(ctx, t, nurse)
        service.transition(ctx, referral, "cancel", reason=rng.choice(list(codes.CANCEL_REASONS)))
        return
    _at(ctx, t, worker)
    service.transition(ctx, referral, "accept")
    for _ in range(rng.randint(0, 3)):
        t += timedelta(hours=rng.uniform(2, 72))
        _at(ctx, t, worker)
        service.log_contact(ctx, referral, rng.choice(["no_answer", "left_message"]), None)
    if rng.random() < 0.85:
        t += timedelta(hours=rng.uniform(2, 96))
        _at(ctx, t, worker)
        service.log_contact(ctx, referral, "reached", None)
    if fate < 0.16:
        _at(ctx, t + timedelta(days=1), nurse)
        service.revoke_consent(ctx, referral)
        return
    if provider and fate < 0.24 and referral.consent.names(provider.id) and referral.status == "in_progress":
        _at(ctx, t + timedelta(days=2), worker)
        service.handoff(ctx, referral, provider.id)
    done = t + timedelta(days=rng.uniform(7, 120))
    if done < now:
        _at(ctx, done, worker)
        outcome = "engaged" if referral.status == "in_progress" and rng.random() < 0.7 else \
            rng.choice(list(codes.COMPLETION_OUTCOMES))
        service.transition(ctx, referral, "complete", outcome=outcome)
