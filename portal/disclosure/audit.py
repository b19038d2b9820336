"""Prove with linear programming that a set of released counts does not disclose a small count.

Threat model. An attacker holds every statistic we ever released (this table, its margins, other
tables, earlier releases) and knows how they relate: each statistic is the sum of some
finest-grained cells ("atoms", e.g. referrals in zone N1 in January 2026). Each published value
is a linear equation over the atoms; every count is a non-negative number. From these alone the
attacker can compute, for any suppressed statistic, the smallest and largest value consistent
with everything published -- exactly the minimum and maximum of a linear program. A release is
unsafe when that interval pins a small count (1 .. k-1) or narrows it so far that the attacker
effectively knows it. The audit solves those programs (HiGHS via scipy) and reports every such
statistic; an empty answer is the proof that no linear combination of the releases recovers one.

What this does not cover: attackers with outside knowledge (e.g. "my neighbour was referred"),
reasoning about the suppression algorithm itself (e.g. "suppressed, so not zero"), integer
reasoning beyond rounding the LP bounds, and derived aggregates other than the ones checked
(released statistics, single atoms, and what a published statistic leaves once the published
statistics inside it are removed) -- an arbitrary union of atoms is not examined.

Pure: plain data in, plain data out; no web, database or portal imports.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

# scipy (about 40 MB resident) is imported where a release is audited, not at import: every web
# worker imports this package for TOTAL and Statistic, and none of them ever solves a program.

__all__ = ["AuditError", "Statistic", "Violation", "audit", "TOLERANCE"]

TOLERANCE = 1e-6


class AuditError(RuntimeError):
    """The solver could not settle a bound, so the audit cannot vouch for the release."""


@dataclass(frozen=True)
class Statistic:
    """One released number.

    key: unique name, e.g. "2026Q1|zone=N1" or "2026Q1|total".
    atoms: the finest-grained cells this statistic is the sum of; shared atom names are how
        different tables and releases are tied together.
    value: the published value, or None when suppressed.
    true_value: the real count, known only to the publisher (never leaves the server).
    """

    key: str
    atoms: frozenset[str]
    value: int | None
    true_value: int

    def __post_init__(self):
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"statistic key must be a non-empty string, not {self.key!r}")
        if isinstance(self.atoms, str):  # frozenset("abc") would silently give three atoms
            raise TypeError(f"{self.key}: atoms must be a collection of names, not a string")
        atoms = frozenset(self.atoms)
        if not atoms:
            raise ValueError(f"{self.key}: a statistic needs at least one atom")
        if not all(isinstance(a, str) for a in atoms):
            raise TypeError(f"{self.key}: atom names must be strings")
        object.__setattr__(self, "atoms", atoms)
        if self.value is not None and not _is_count(self.value):
            raise ValueError(f"{self.key}: published value must be a non-negative int or None")
        if not _is_count(self.true_value):
            raise ValueError(f"{self.key}: true value must be a non-negative int")


@dataclass(frozen=True)
class Violation:
    """Something the attacker can pin: a statistic (its key), a finest cell ("atom:<name>"), or
    what a published statistic leaves after its published parts ("residual:<key>").

    low/high are the attacker's best bounds, rounded inwards to integers (counts are whole).
    atoms (not part of equality) are where suppressing more can help: the statistic's atoms, the
    atom itself, or for a residual the whole statistic, whose published parts are the cure.
    """

    key: str
    low: float
    high: float
    reason: str
    atoms: frozenset[str] = field(default=frozenset(), compare=False)


def _is_count(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 0


def audit(statistics: Iterable[Statistic], k: int) -> list[Violation]:
    """Every way the released statistics let an attacker pin a small count.

    Each atom is an unknown real >= 0; each published statistic adds sum(atoms) == value. For each
    suppressed statistic the attacker's interval [low, high] is the min and max of sum(its atoms)
    under those equalities (linprog, method="highs"); bounds are then rounded inwards to whole
    numbers (ceil(low), floor(high)), which is still only what an attacker surely knows. Violations:

    * the interval lies within [1, k-1]: the attacker knows it is a small non-zero count;
    * the interval is narrower than k-1 for a suppressed statistic whose true value is below k
      (the small counts, and zeros, as the design asks). A suppressed statistic whose true value
      is k or more is not held to the width rule: its exact value would have been publishable, and
      an earlier release may already pin it, which no later suppression could undo;
    * a published statistic whose value is 1..k-1 (a primary suppression was missed);
    * an atom that is not itself a released statistic lies within [1, k-1] (key "atom:<name>"):
      differencing two overlapping releases, e.g. Jan-Apr minus Jan-Mar, pins a count nobody
      released -- the "one new person" attack;
    * what remains of a published statistic after removing the published statistics inside it
      lies within [1, k-1] (key "residual:<key>"): a row total minus its published cells is the
      sum of its suppressed cells, so two small cells suppressed together must not add up to a
      small count either.

    An unbounded maximum means infinitely wide: safe. Identical atom sets are solved once. Raises
    ValueError for duplicate keys or published values that contradict each other, AuditError when
    HiGHS fails.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, not {k!r}")
    stats = _unique(statistics)
    if not stats:
        return []
    problem = _Problem(stats)
    found: list[Violation] = []

    for s in stats:
        if s.value is not None and 1 <= s.value <= k - 1:
            found.append(Violation(s.key, float(s.value), float(s.value),
                                   f"published value {s.value} is a small count (1..{k - 1})", s.atoms))

    for s in stats:
        if s.value is None:
            v = problem.judge(s.atoms, k, width_rule=s.true_value < k, key=s.key, what="suppressed count",
                              cure=s.atoms)
            if v is not None:
                found.append(v)

    # Aggregates nobody released but anyone can work out: each atom, and what is left of a
    # published statistic once the published statistics inside it are taken away.
    released = {s.atoms for s in stats}
    derived: dict[frozenset[str], str] = {}
    for atom in problem.atoms:
        if frozenset([atom]) not in released:
            derived.setdefault(frozenset([atom]), f"atom:{atom}")
    container: dict[frozenset[str], frozenset[str]] = {}
    for s, rest in _residuals(stats):
        if rest not in released and rest not in derived:
            derived[rest] = f"residual:{s.key}"
            container[rest] = s.atoms
    for atoms in problem.possibly_positive(list(derived)):
        key = derived[atoms]
        what = "atom (not itself released)" if key.startswith("atom:") else (
            f"remainder of {key.removeprefix('residual:')} after the published parts inside it")
        v = problem.judge(atoms, k, width_rule=False, key=key, what=what,
                          cure=container.get(atoms, atoms))
        if v is not None:
            found.append(v)
    return found


def _residuals(stats: list[Statistic]):
    """(statistic, its atoms minus those of every published statistic strictly inside it).

    The total of a line minus its published cells gives the sum of the suppressed ones: if that
    sum is small, two small cells "protecting" each other still disclose a small group count.
    """
    published = [s for s in stats if s.value is not None]
    containing: dict[str, list[int]] = {}
    for i, s in enumerate(published):
        for a in s.atoms:
            containing.setdefault(a, []).append(i)
    for s in published:
        inside = {i for a in s.atoms for i in containing[a]}
        parts = [published[i].atoms for i in inside if published[i].atoms < s.atoms]
        if parts:
            rest = s.atoms - frozenset().union(*parts)
            if rest:
                yield s, rest


def _unique(statistics: Iterable[Statistic]) -> list[Statistic]:
    by_key: dict[str, Statistic] = {}
    for s in statistics:
        if not isinstance(s, Statistic):
            raise TypeError(f"expected Statistic, got {type(s).__name__}")
        if s.key in by_key and by_key[s.key] != s:
            raise ValueError(f"two different statistics share the key {s.key!r}")
        by_key[s.key] = s
    return list(by_key.values())


class _Problem:
    """The attacker's linear system, built once (sparse) and reused for every objective."""

    def __init__(self, stats: list[Statistic]):
        self.atoms = sorted(set().union(*(s.atoms for s in stats)))
        self.index = {a: i for i, a in enumerate(self.atoms)}
        equalities: dict[frozenset[str], int] = {}
        for s in stats:
            if s.value is None:
                continue
            if equalities.setdefault(s.atoms, int(s.value)) != s.value:
                raise ValueError(f"published values contradict each other over the atoms of {s.key!r}")
        rows, cols = [], []
        for r, atoms in enumerate(equalities):
            for a in atoms:
                rows.append(r)
                cols.append(self.index[a])
        n = len(self.atoms)
        if equalities:
            from scipy import sparse
            self.A = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(equalities), n))
            self.b = np.array(list(equalities.values()), dtype=float)
        else:
            self.A = self.b = None
        # An atom in no published equation is unbounded above; any sum containing it is too.
        # Every coefficient is +1 and every atom >= 0, so an atom in some equation is bounded.
        self.constrained = {a for atoms in equalities for a in atoms}
        self._cache: dict[frozenset[str], tuple[float, float]] = {}
        self._check_feasible()

    def _solve(self, c: np.ndarray):
        from scipy.optimize import linprog
        return linprog(c, A_eq=self.A, b_eq=self.b, bounds=(0, None), method="highs")

    def _check_feasible(self):
        if self.A is None:
            return
        res = self._solve(np.zeros(len(self.atoms)))
        if res.status == 2:
            raise ValueError("the published statistics contradict each other (no non-negative "
                             "counts satisfy them all); releases must share one consistent history")
        if res.status != 0:
            raise AuditError(f"feasibility check failed: {res.message}")

    def _objective(self, atoms: frozenset[str]) -> np.ndarray:
        c = np.zeros(len(self.atoms))
        c[[self.index[a] for a in atoms]] = 1.0
        return c

    def high(self, atoms: frozenset[str]) -> float:
        if not atoms <= self.constrained:
            return math.inf
        res = self._solve(-self._objective(atoms))
        if res.status == 3:  # cannot happen for these systems (see `constrained`); be safe anyway
            return math.inf
        if res.status != 0:
            raise AuditError(f"maximising {sorted(atoms)[:3]}...: {res.message}")
        return -res.fun

    def low(self, atoms: frozenset[str]) -> float:
        res = self._solve(self._objective(atoms))
        if res.status != 0:
            raise AuditError(f"minimising {sorted(atoms)[:3]}...: {res.message}")
        return res.fun

    def possibly_positive(self, sets: list[frozenset[str]]) -> list[frozenset[str]]:
        """Those atom sets whose sum might have a minimum >= 1 (a cheap filter before LPs each).

        One LP minimises the sum over all of them; every set whose sum is 0 at that optimum has
        minimum 0 and cannot be pinned at a positive value. Repeat on the rest while it helps.
        Sets with an atom in no published equation are unbounded above and dropped at once.
        """
        left = [a for a in sets if a <= self.constrained]
        while left:
            c = sum(self._objective(a) for a in left)
            res = self._solve(c)
            if res.status != 0:
                raise AuditError(f"minimising derived aggregates: {res.message}")
            zero = {a for a in left if sum(res.x[self.index[x]] for x in a) <= TOLERANCE}
            if not zero:
                break
            left = [a for a in left if a not in zero]
        return left

    def judge(self, atoms: frozenset[str], k: int, *, width_rule: bool, key: str,
              what: str, cure: frozenset[str]) -> Violation | None:
        if atoms in self._cache:
            low, high = self._cache[atoms]
        else:
            high = self.high(atoms)
            if math.isinf(high):
                return None  # unbounded above: infinitely wide (low is not needed)
            if not width_rule and high > k - 1 + TOLERANCE:
                return None  # cannot lie within [1, k-1]; skip the second LP
            low = self.low(atoms)
            self._cache[atoms] = (low, high)
        lo, hi = math.ceil(low - TOLERANCE), math.floor(high + TOLERANCE)
        if lo >= 1 and hi <= k - 1:
            return Violation(key, float(lo), float(hi),
                             f"{what} is known to lie in [{lo}, {hi}], a small non-zero count (1..{k - 1})", cure)
        if width_rule and hi - lo < k - 1:
            return Violation(key, float(lo), float(hi),
                             f"{what} is known to lie in [{lo}, {hi}], narrower than {k - 1}", cure)
        return None
