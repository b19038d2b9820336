"""Microseconds per policy decision: the portal's Cedar engine beside pycasbin on the same rules.

    .venv/bin/python bench/policy_bench.py            # full run, writes bench/results/policy.json
    .venv/bin/python bench/policy_bench.py --smoke    # a few seconds (CI); asserts no timing

The decisions are the ones a CVI inbox page makes: 50 referrals × the 16 referral actions that
portal/policy/projection.py decides for each row. Both engines receive ORM objects and pay for
turning them into their own input (Cedar entities, Casbin request objects).

The PDP answers a request from the decisions it made before on requests of the same shape
(portal.policy.entities.Shaper: the facts up to ids no policy names — a new referral from a
hospital the worker has no tie to is, to Cedar, the same request as the last one), and evaluates
the rest with Cedar: each distinct (action class, row) once, where an action class is actions
that the same policies decide (accept, decline, hold … are one evaluation). So the rows come in
two kinds, a shape decided before and a shape never seen (caches dropped before each sample with
PolicyEngine.forget(), which is inside the timing):

- cedar single, known shape: `decide()` on new referrals of the shapes this process has decided;
- cedar single, new shape: the same with every cache dropped first: entity graph built, parsed
  and evaluated for this one decision (what "cold graph" measured before);
- cedar single, graph parsed: caches dropped but the graph kept, as the gate, the projection and
  the navigation of one request decide on the same user and referral: the Cedar evaluation path;
- cedar batched inbox: `decide_each()` on inbox pages of new referrals (from three hospitals,
  new or the worker's own, a few past consent), shapes known from earlier pages;
- cedar batched, 50 unlike rows: each row from its own hospital (to Cedar: one shape);
- cedar batched, 50 rows Cedar tells apart (sender's kind and state, assignee, consent and its
  categories all vary), shapes known; and the same with every cache dropped: the worst case,
  50 graphs parsed and 50 × 9 action classes evaluated;
- casbin single / batched inbox: `enforce()` / `batch_enforce()` on bench/casbin/referrals.conf.

Before timing, both engines decide a sample of every kind of principal against every relationship
to a referral; any disagreement makes the run exit 1. Timing never fails the run.

Analysis (29 November 2026, 2 shared cores at load 5-8, so absolute figures are inflated and the
before/after pairs were taken minutes apart): a Cedar evaluation through cedarpy costs a fixed
~15 µs a request however few policies it reads (building the request, the JSON answer, its
parse), so the PDP's time is the number of Cedar requests it makes. Action classes make 9
requests of the 16 a referral row needs; shapes make one set per shape instead of per row; and
remembered decisions make none for a shape seen before, which is almost every request of a
running worker (shapes are kinds × roles × relationships, a few hundred at most). The figures of
each run are in bench/results/policy.json and the commit messages that changed them.
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import casbin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal.models import Consent, Organization, Referral, User  # noqa: E402
from portal.policy import PolicyEngine, decide, decide_each  # noqa: E402
from portal.policy.actions import REFERRAL_VIEWS  # noqa: E402
from portal.policy.entities import (Shaper, facts, graph, merge, resource_entities, uid,  # noqa: E402
                                    user_entities, user_facts)
from portal.policy.projection import REFERRAL_WORK  # noqa: E402

ACTIONS = REFERRAL_VIEWS + REFERRAL_WORK
PAGE = 50
GOALS = {"single": 50.0, "batched": 20.0}  # µs per decision (issue #6, item 2b)
CASBIN_DIR = ROOT / "bench" / "casbin"
NOW = datetime.now(timezone.utc)


# -- a small world of transient ORM objects (no database: this measures the decision only) -------
@dataclass
class World:
    orgs: dict[str, Organization]
    users: dict[str, User]


def build_world() -> World:
    orgs = {name: Organization(id=uuid.uuid4(), name=name, kind=kind, active=True)
            for name, kind in (("hospital", "hospital_program"), ("hospital2", "hospital_program"),
                               ("hospital3", "hospital_program"), ("north", "cvi_team"), ("east", "cvi_team"),
                               ("provider", "service_provider"), ("city", "city_office"),
                               ("police", "police_partner"))}

    def user(org, role, admin=False):
        return User(id=uuid.uuid4(), role=role, is_portal_admin=admin, organization_id=orgs[org].id,
                    organization=orgs[org])

    users = {"nurse": user("hospital", "staff"), "hospital_admin": user("hospital", "org_admin"),
             "north_staff": user("north", "staff"), "north_staff2": user("north", "staff"),
             "north_supervisor": user("north", "supervisor"), "north_admin": user("north", "org_admin"),
             "east_admin": user("east", "org_admin"), "provider_staff": user("provider", "staff"),
             "city_staff": user("city", "org_admin"), "police_staff": user("police", "org_admin"),
             "portal_admin": user("city", "staff", admin=True)}
    return World(orgs, users)


SHAPES = ("unassigned", "assigned to north_staff", "assigned to north_staff2", "consent revoked",
          "consent expired", "contact only", "east's referral", "handed to provider")


def referral(world: World, shape: str, sender: Organization | None = None) -> Referral:
    """A fresh referral (new id) of one of SHAPES, from the hospital unless `sender` is given."""
    o, u = world.orgs, world.users
    sender, receiver = sender or o["hospital"], o["east" if shape == "east's referral" else "north"]
    if shape == "handed to provider":
        sender, receiver = o["north"], o["provider"]
    consent = Consent(id=uuid.uuid4(), method="verbal", obtained_at=NOW - timedelta(days=3),
                      expires_at=NOW + timedelta(days=(-1 if shape == "consent expired" else 87)),
                      revoked_at=NOW - timedelta(hours=1) if shape == "consent revoked" else None,
                      data_categories="contact" if shape == "contact only" else "contact note")
    assignee = {"assigned to north_staff": u["north_staff"], "assigned to north_staff2": u["north_staff2"]}.get(shape)
    return Referral(id=uuid.uuid4(), sender_org_id=sender.id, receiver_org_id=receiver.id, sender=sender,
                    receiver=receiver, consent=consent, status="revoked" if shape == "consent revoked" else "sent",
                    assigned_to_id=assignee.id if assignee else None)


def inbox_page(world: World, rng: random.Random) -> list[Referral]:
    """A North staff member's inbox: from three hospitals, new or theirs, a few past consent."""
    senders = [world.orgs[name] for name in ("hospital", "hospital2", "hospital3")]
    shapes = rng.choices(["unassigned", "assigned to north_staff", "contact only", "consent expired"],
                         [55, 30, 10, 5], k=PAGE)
    return [referral(world, shape, rng.choice(senders)) for shape in shapes]


def distinct_page(world: World) -> list[Referral]:
    """Fifty rows each from its own hospital (alike to Cedar: the ids differ, nothing else)."""
    return [referral(world, "unassigned", Organization(id=uuid.uuid4(), name=f"h{i}", kind="hospital_program",
                                                       active=True)) for i in range(PAGE)]


def told_apart_page(world: World) -> list[Referral]:
    """Fifty rows no two of the same shape for North staff: the sender's kind and state, the
    assignee, the consent and its categories all vary (each from its own organization)."""
    o, u = world.orgs, world.users
    combos = itertools.product(("hospital_program", "cvi_team", "service_provider"), (True, False),
                               (None, u["north_staff"], u["north_staff2"]),
                               ("revoked", "contact", "note", "contact note"))
    page = []
    for kind, active, assignee, categories in itertools.islice(combos, PAGE):
        sender = Organization(id=uuid.uuid4(), name="sender", kind=kind, active=active)
        consent = Consent(id=uuid.uuid4(), method="verbal", obtained_at=NOW - timedelta(days=3),
                          expires_at=NOW + timedelta(days=87), data_categories=categories.replace("revoked", "contact"),
                          revoked_at=NOW - timedelta(hours=1) if categories == "revoked" else None)
        page.append(Referral(id=uuid.uuid4(), sender_org_id=sender.id, receiver_org_id=o["north"].id, sender=sender,
                             receiver=o["north"], consent=consent, status="sent",
                             assigned_to_id=assignee.id if assignee else None))
    return page


def shapes_of(user: User, page: list[Referral], pdp: PolicyEngine) -> int:
    """How many rows Cedar can tell apart (what decide_each decides once each)."""
    shaper = Shaper(facts(user), pdp.named_types)
    return len({shaper.of(facts(r)) for r in page})


# -- Casbin: the same rules, and the same ORM objects turned into its request values --------------
def casbin_enforcer(world: World) -> casbin.Enforcer:
    enforcer = casbin.Enforcer(str(CASBIN_DIR / "referrals.conf"), str(CASBIN_DIR / "referrals.csv"))
    for user in world.users.values():  # roles per organization (the domain), from the user rows
        enforcer.add_grouping_policy(str(user.id), user.role, str(user.organization_id))
    return enforcer


def casbin_subject(user: User) -> SimpleNamespace:
    return SimpleNamespace(id=str(user.id), org=str(user.organization_id), kind=user.organization.kind,
                           admin=bool(user.is_portal_admin))


def casbin_object(referral: Referral) -> SimpleNamespace:
    consent = referral.consent
    active = consent.active_at(NOW) and referral.status != "revoked"
    return SimpleNamespace(sender=str(referral.sender_org_id), receiver=str(referral.receiver_org_id),
                           assignee=str(referral.assigned_to_id) if referral.assigned_to_id else "",
                           consent_active=active, released=sorted(consent.categories) if active else [])


def casbin_decide(enforcer, user, action, referral) -> bool:
    return enforcer.enforce(casbin_subject(user), casbin_object(referral), action.value)


def casbin_page(enforcer, user, actions, referrals) -> list[bool]:
    subject = casbin_subject(user)
    requests = [(subject, obj, a.value) for obj in map(casbin_object, referrals) for a in actions]
    return enforcer.batch_enforce(requests)


# -- agreement -----------------------------------------------------------------------------------
def agreement(pdp: PolicyEngine, enforcer, world: World) -> tuple[int, int, list[str]]:
    """Every principal × every referral shape × every referral action, decided by both."""
    agree, total, differences = 0, 0, []
    for shape in SHAPES:
        ref = referral(world, shape)
        for name, user in world.users.items():
            for action in ACTIONS:
                cedar = decide(user, action, ref, pdp).allowed
                other = casbin_decide(enforcer, user, action, ref)
                total += 1
                if cedar == other:
                    agree += 1
                else:
                    differences.append(f"{name} {action.value} on '{shape}': cedar={cedar} casbin={other}")
    return agree, total, differences


# -- timing --------------------------------------------------------------------------------------
def timed(run, samples: int, per: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU µs per decision of each call of `run` (which makes `per` decisions).
    On a shared machine the CPU time shows the cost when other processes take the cores."""
    wall, cpu = [], []
    gc.disable()  # a collection inside one sample is noise, not the engine
    try:
        for i in range(samples):
            start, start_cpu = time.perf_counter(), time.thread_time()
            run(i)
            cpu.append((time.thread_time() - start_cpu) * 1e6 / per)
            wall.append((time.perf_counter() - start) * 1e6 / per)
    finally:
        gc.enable()
    return wall, cpu


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(engine: str, mode: str, goal_kind: str, times: tuple[list[float], list[float]], note: str) -> dict:
    wall, cpu = times
    p50, goal = statistics.median(wall), GOALS[goal_kind]
    return {"engine": engine, "mode": mode, "p50_us": round(p50, 1), "p95_us": round(percentile(wall, 0.95), 1),
            "cpu_p50_us": round(statistics.median(cpu), 1),
            "decisions_per_s": round(1e6 / statistics.fmean(wall)), "goal_us": goal, "goal_met": p50 <= goal,
            "samples": len(wall), "note": note}


def measure(pdp: PolicyEngine, enforcer, world: World, smoke: bool) -> list[dict]:
    staff = world.users["north_staff"]
    n_single, n_pages = (400, 5) if smoke else (8000, 60)
    rows = []

    rng = random.Random(6)
    page = inbox_page(world, rng)
    pairs = [(r, a) for r in page for a in ACTIONS]
    for r, a in pairs:  # the shapes of the page decided once, as by the requests before
        decide(staff, a, r, pdp)
    fresh = [inbox_page(world, rng) for _ in range(max(1, n_single // (PAGE * len(ACTIONS))))]
    fresh_pairs = [(r, a) for p in fresh for r in p for a in ACTIONS]
    rows.append(summary("cedar", "single, known shape", "single",
                        timed(lambda i: decide(staff, fresh_pairs[i % len(fresh_pairs)][1],
                                               fresh_pairs[i % len(fresh_pairs)][0], pdp), n_single, 1),
                        "decide() on new referrals of shapes this process has decided"))

    def first_of_its_shape(i):
        pdp.forget()
        r, a = pairs[i % len(pairs)]
        decide(staff, a, r, pdp)
    rows.append(summary("cedar", "single, new shape", "single", timed(first_of_its_shape, n_single // 4, 1),
                        "every cache dropped first: entity graph built, parsed and evaluated for one decision"))

    def graph_parsed(i):
        pdp._decisions.clear()
        r, a = pairs[i % len(pairs)]
        decide(staff, a, r, pdp)
    for r in page:  # every (user, referral) graph of the page parsed, as within a request
        key = (user_facts(staff), facts(r))
        pdp.entities_for(key, lambda: graph(*key))
    rows.append(summary("cedar", "single, graph parsed", "single", timed(graph_parsed, n_single // 2, 1),
                        "remembered decisions dropped, graph kept: one Cedar evaluation"))

    pages = [inbox_page(world, rng) for _ in range(n_pages)]
    shapes = statistics.median(shapes_of(staff, p, pdp) for p in pages)
    rows.append(summary("cedar", f"batched inbox ({PAGE}x{len(ACTIONS)})", "batched",
                        timed(lambda i: decide_each(staff, ACTIONS, pages[i], pdp), n_pages, PAGE * len(ACTIONS)),
                        f"decide_each(): new referrals every page (median {shapes:.0f} shapes of {PAGE} rows), "
                        "shapes known from earlier pages"))
    worst = [distinct_page(world) for _ in range(max(2, n_pages // 3))]
    rows.append(summary("cedar", f"batched, {PAGE} unlike rows", "batched",
                        timed(lambda i: decide_each(staff, ACTIONS, worst[i], pdp), len(worst),
                              PAGE * len(ACTIONS)),
                        f"each row from its own hospital ({shapes_of(staff, worst[0], pdp)} shape to Cedar)"))
    apart = [told_apart_page(world) for _ in range(max(2, n_pages // 3))]
    rows.append(summary("cedar", f"batched, {PAGE} told apart", "batched",
                        timed(lambda i: decide_each(staff, ACTIONS, apart[i], pdp), len(apart),
                              PAGE * len(ACTIONS)),
                        f"{shapes_of(staff, apart[0], pdp)} shapes, decided before (by the page before)"))

    def first_time(i):
        pdp.forget()
        decide_each(staff, ACTIONS, apart[i], pdp)
    rows.append(summary("cedar", f"batched, {PAGE} told apart, new", "batched",
                        timed(first_time, len(apart), PAGE * len(ACTIONS)),
                        "worst case: every cache dropped first, 50 graphs parsed, 50 x 9 action classes evaluated"))

    rows.append(summary("casbin", "single", "single",
                        timed(lambda i: casbin_decide(enforcer, staff, pairs[i % len(pairs)][1],
                                                      pairs[i % len(pairs)][0]), n_single // 4, 1),
                        "enforce() with ABAC request objects built from the rows"))
    rows.append(summary("casbin", f"batched inbox ({PAGE}x{len(ACTIONS)})", "batched",
                        timed(lambda i: casbin_page(enforcer, staff, ACTIONS, pages[i]), max(2, n_pages // 6),
                              PAGE * len(ACTIONS)),
                        "batch_enforce(), request objects built once per referral"))
    return rows


def breakdown(pdp: PolicyEngine, world: World, samples: int) -> dict:
    """Where a cold single decision's time goes: entity dicts, JSON + Cedar parse, evaluation."""
    staff = world.users["north_staff"]
    refs = [referral(world, "unassigned") for _ in range(samples)]
    graphs = []
    build = timed(lambda i: graphs.append(merge(user_entities(staff), resource_entities(refs[i])[1])), samples, 1)
    parsed = []
    parse = timed(lambda i: parsed.append(pdp.entities(graphs[i])), samples, 1)
    principal = uid("User", staff.id)
    evaluate = timed(lambda i: pdp.decide_many(principal, [("referral.view_status", uid("Referral", refs[i].id))],
                                               parsed[i]), samples, 1)
    return {"entity_dicts_us": round(statistics.median(build[0]), 1),
            "parse_us": round(statistics.median(parse[0]), 1), "evaluate_us": round(statistics.median(evaluate[0]), 1)}


def print_table(rows: list[dict], agree: int, total: int, parts: dict) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"µs per decision, wall clock (CPU time of this process beside it); {os.cpu_count()} CPUs, load {load}")
    print(f"{'engine':<8} {'mode':<26} {'p50':>8} {'p95':>8} {'cpu p50':>8} {'decisions/s':>12}  goal (p50)")
    for r in rows:
        verdict = "met" if r["goal_met"] else "MISSED"
        print(f"{r['engine']:<8} {r['mode']:<26} {r['p50_us']:>8.1f} {r['p95_us']:>8.1f} {r['cpu_p50_us']:>8.1f} "
              f"{r['decisions_per_s']:>12,}  ≤ {r['goal_us']:.0f} µs {verdict}")
    print(f"agreement: {agree}/{total} decisions equal (cedar vs casbin)")
    print(f"cold single decision, p50: entity dicts {parts['entity_dicts_us']} µs, "
          f"JSON + Cedar parse {parts['parse_us']} µs, Cedar evaluation {parts['evaluate_us']} µs")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for CI; asserts no timing")
    parser.add_argument("--out", type=Path, help="JSON results (default bench/results/policy.json, "
                                                 "policy-smoke.json with --smoke)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "bench" / "results" / ("policy-smoke.json" if args.smoke else "policy.json")

    pdp = PolicyEngine(ROOT / "policies")
    world = build_world()
    enforcer = casbin_enforcer(world)
    agree, total, differences = agreement(pdp, enforcer, world)
    for line in differences[:20]:
        print("DIFFERENT:", line)
    rows = measure(pdp, enforcer, world, args.smoke)
    parts = breakdown(pdp, world, 100 if args.smoke else 1000)
    print_table(rows, agree, total, parts)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "policy decisions", "smoke": args.smoke, "at": datetime.now(timezone.utc).isoformat(),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average": list(os.getloadavg())},
        "page": {"referrals": PAGE, "actions": len(ACTIONS)}, "rows": rows,
        "agreement": {"equal": agree, "total": total}, "cold_single_breakdown": parts,
    }, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if agree == total else 1


if __name__ == "__main__":
    sys.exit(main())
