"""Cell suppression for released count tables: primary, complementary, and audit-driven repair.

A two-dimensional table (row label, column label) -> count is released with its row totals,
column totals and grand total. Each row (and each column) with its total is one linear relation,
so a single suppressed member of a line can be recomputed from the others. We:

1. suppress every member (cell or margin) whose count is 1..k-1 (primary suppression; 0 is
   published as 0);
2. in every line with exactly one suppressed member suppress one more (complementary
   suppression), preferring the smallest non-zero cell, never a zero while a non-zero cell is
   available, the line's total when only zeros remain; likewise in a line with a published
   total whose suppressed cells add up to 1..k-1 (the total minus the rest gives that sum);
   repeat to a fixed point;
3. audit the table together with `fixed` (other tables and earlier releases over the same atoms)
   by linear programming, and while the audit finds violations suppress one more member per
   violation near it, then repeat 2. Every round suppresses at least one more non-zero member,
   so this ends; if even suppressing every non-zero member cannot satisfy the audit, the
   disclosure is already in `fixed` and DisclosureError says so.

Pure: plain data in, plain data out; no web, database or portal imports.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping

from portal.disclosure.audit import Statistic, Violation, _is_count, audit

__all__ = ["TOTAL", "DisclosureError", "protect_table", "protect_series", "table_statistics",
           "series_statistics", "suppress_rate"]

TOTAL = "__total__"
_SERIES = "__series__"  # the one column of a series, inside protect_series

Member = tuple[str, str]
AtomOf = Callable[[str, str], "str | Iterable[str]"]


class DisclosureError(ValueError):
    """No suppression of this table can pass the audit: `fixed` already discloses."""

    def __init__(self, message: str, violations: list[Violation]):
        super().__init__(message)
        self.violations = violations


class _Table:
    """Rows, columns, margins, lines and atoms of one table; validated once."""

    def __init__(self, cells: Mapping[tuple[str, str], int], prefix: str, atom_of: AtomOf | None):
        if not cells:
            raise ValueError("empty table")
        rows: dict[str, None] = {}
        cols: dict[str, None] = {}
        for key, count in cells.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(f"cell keys are (row, column) pairs, not {key!r}")
            for label in key:
                if not isinstance(label, str) or not label or "|" in label or label == TOTAL:
                    raise ValueError(f"label {label!r}: labels are non-empty strings without '|', "
                                     f"and {TOTAL!r} is reserved")
            if not _is_count(count):
                raise ValueError(f"cell {key}: counts are non-negative ints, not {count!r}")
            rows.setdefault(key[0])
            cols.setdefault(key[1])
        self.rows, self.cols = list(rows), list(cols)
        missing = [(r, c) for r in self.rows for c in self.cols if (r, c) not in cells]
        if missing:
            raise ValueError(f"the table is not a full grid; missing {missing[:3]}")
        self.prefix = prefix

        value: dict[Member, int] = {}
        atoms: dict[Member, frozenset[str]] = {}
        for r in self.rows:
            for c in self.cols:
                value[(r, c)] = int(cells[(r, c)])
                atoms[(r, c)] = _atoms(atom_of(r, c) if atom_of else f"{prefix}{r}|{c}", (r, c))
        interior = [atoms[(r, c)] for r in self.rows for c in self.cols]
        if sum(map(len, interior)) != len(frozenset().union(*interior)):
            raise ValueError("two cells share an atom; a table's cells must partition its atoms, "
                             "or its totals would count someone twice")
        for r in self.rows:
            value[(r, TOTAL)] = sum(value[(r, c)] for c in self.cols)
            atoms[(r, TOTAL)] = frozenset().union(*(atoms[(r, c)] for c in self.cols))
        for c in self.cols:
            value[(TOTAL, c)] = sum(value[(r, c)] for r in self.rows)
            atoms[(TOTAL, c)] = frozenset().union(*(atoms[(r, c)] for r in self.rows))
        value[(TOTAL, TOTAL)] = sum(value[(r, TOTAL)] for r in self.rows)
        atoms[(TOTAL, TOTAL)] = frozenset().union(*(atoms[(r, TOTAL)] for r in self.rows))
        self.value, self.atoms = value, atoms
        # Order of members: row by row, each row's total after its cells, the total row last.
        self.members = [(r, c) for r in self.rows + [TOTAL] for c in self.cols + [TOTAL]]
        self.order = {m: i for i, m in enumerate(self.members)}
        self.key = {m: f"{prefix}{m[0]}|{m[1]}" for m in self.members}
        self.member_of_key = {v: m for m, v in self.key.items()}

        # Each line: its summands and its total. The margins form two more lines.
        self.lines: list[tuple[list[Member], Member]] = (
            [([(r, c) for c in self.cols], (r, TOTAL)) for r in self.rows]
            + [([(r, c) for r in self.rows], (TOTAL, c)) for c in self.cols]
            + [([(TOTAL, c) for c in self.cols], (TOTAL, TOTAL)),
               ([(r, TOTAL) for r in self.rows], (TOTAL, TOTAL))])
        self.lines_of: dict[Member, list[int]] = {m: [] for m in self.members}
        for i, (summands, total) in enumerate(self.lines):
            for m in summands + [total]:
                self.lines_of[m].append(i)

    def is_margin(self, m: Member) -> bool:
        return TOTAL in m

    def statistics(self, published: Mapping[Member, int | None]) -> list[Statistic]:
        unknown = set(published) - set(self.members)
        if unknown:
            raise ValueError(f"published has keys that are not members of the table: {sorted(unknown)[:3]}")
        return [Statistic(self.key[m], self.atoms[m], published.get(m), self.value[m])
                for m in self.members]

    def publish(self, suppressed: set[Member]) -> dict[Member, int | None]:
        return {m: (None if m in suppressed else self.value[m]) for m in self.members}

    def best(self, candidates: Iterable[Member], suppressed: set[Member]) -> Member | None:
        """The smallest non-zero publishable member, interior cells before margins."""
        pool = [m for m in candidates if m not in suppressed and self.value[m] > 0]
        if not pool:
            return None
        return min(pool, key=lambda m: (self.is_margin(m), self.value[m], self.order[m]))

    def close(self, suppressed: set[Member], k: int) -> None:
        """Complementary suppression to a fixed point.

        No line may have exactly one suppressed member (total minus the rest recovers it), nor,
        when its total is published, suppressed cells that add up to 1..k-1 (total minus the
        rest gives their sum: a small count about the two of them together).
        """
        changed = True
        while changed:
            changed = False
            for summands, total in self.lines:
                hidden = [m for m in summands + [total] if m in suppressed]
                if not (len(hidden) == 1 or (
                        total not in suppressed and 1 <= sum(self.value[m] for m in hidden) <= k - 1)):
                    continue
                pick = self.best(summands, suppressed)
                if pick is None:  # only zeros (or the total) remain
                    pick = total if total not in suppressed else next(
                        m for m in summands if m not in suppressed)
                suppressed.add(pick)
                changed = True

    def repair(self, violation: Violation, suppressed: set[Member]) -> Member | None:
        """One more member to suppress against this violation, or None if none is near it."""
        own = self.member_of_key.get(violation.key)
        if own is not None:
            near = [m for i in self.lines_of[own] for m in self.lines[i][0] + [self.lines[i][1]]]
            return self.best(near, suppressed)
        # A fixed statistic, a loose atom or a remainder (its atoms are then its whole statistic):
        # first the members that share its atoms, then their lines.
        touching = [m for m in self.members if self.atoms[m] & violation.atoms]
        pick = self.best(touching, suppressed)
        if pick is None:
            near = [m for t in touching for i in self.lines_of[t]
                    for m in self.lines[i][0] + [self.lines[i][1]]]
            pick = self.best(near, suppressed)
        return pick


def _atoms(names: str | Iterable[str], member: Member) -> frozenset[str]:
    atoms = frozenset([names]) if isinstance(names, str) else frozenset(names)
    if not atoms or not all(isinstance(a, str) for a in atoms):
        raise ValueError(f"atom_of{member} must give an atom name or a non-empty set of them")
    return atoms


def table_statistics(cells: Mapping[tuple[str, str], int], published: Mapping[Member, int | None],
                     prefix: str = "", atom_of: AtomOf | None = None) -> list[Statistic]:
    """The Statistics of a table and its publish decisions: every cell, row, column and grand total.

    Keys are f"{prefix}{row}|{col}", with TOTAL for margins ("__total__|N1" is N1's column
    total). A cell's atoms are atom_of(row, col) -- one name or a set of names, so a quarter
    cell can be the sum of its three month atoms -- by default the single atom f"{prefix}{row}|{col}"
    (the prefix keeps unrelated tables from sharing atoms by accident; pass atom_of to share
    them on purpose). A margin's atoms are the union of its line's. A member missing from
    `published` counts as suppressed (value None).
    """
    return _Table(cells, prefix, atom_of).statistics(published)


def protect_table(cells: Mapping[tuple[str, str], int], k: int = 11, fixed: Iterable[Statistic] = (),
                  *, prefix: str = "", atom_of: AtomOf | None = None) -> dict[Member, int | None]:
    """What to publish for every cell and margin of a table; None means suppressed.

    Keys: (r, c) for cells, (r, TOTAL) row totals, (TOTAL, c) column totals, (TOTAL, TOTAL) the
    grand total. `fixed` holds statistics already public (other tables, earlier releases) over
    the same atom names (see `table_statistics` for `prefix` and `atom_of`; keys must not clash
    with fixed keys). The result passes `audit(table_statistics(...) + fixed, k)`; raises
    DisclosureError when no suppression of non-zero members can (the fixed statistics already
    disclose on their own, or together with this table's published zeros).
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, not {k!r}")
    table = _Table(cells, prefix, atom_of)
    fixed = list(fixed)
    suppressed = {m for m in table.members if 1 <= table.value[m] <= k - 1}
    table.close(suppressed, k)
    while True:
        published = table.publish(suppressed)
        found = audit(table.statistics(published) + fixed, k)
        if not found:
            return published
        picks = {p for v in found if (p := table.repair(v, suppressed)) is not None}
        if not picks:  # nothing near the violations: widen anywhere, smallest first
            p = table.best(table.members, suppressed)
            if p is None:
                raise DisclosureError(
                    "even with every non-zero member suppressed the audit fails; the fixed "
                    "statistics disclose on their own (or with this table's zeros): " + "; ".join(f"{v.key}: {v.reason}" for v in found), found)
            picks = {p}
        suppressed |= picks  # at least one new non-zero member each round: the loop ends
        table.close(suppressed, k)


def _series_atom_of(prefix: str, atom_of: Callable[[str], "str | Iterable[str]"] | None) -> AtomOf:
    return (lambda r, c: atom_of(r)) if atom_of else (lambda r, c: f"{prefix}{r}")


def protect_series(values: Mapping[str, int], k: int = 11, fixed: Iterable[Statistic] = (),
                   *, prefix: str = "", atom_of: Callable[[str], "str | Iterable[str]"] | None = None
                   ) -> dict[str, int | None]:
    """A single column with its total: keys of `values` plus TOTAL; None means suppressed.

    The one-column case of protect_table. Atoms default to f"{prefix}{key}"; atom_of(key) may
    map a key to one atom or a set. `series_statistics` turns the result into Statistics.
    """
    if not values:
        raise ValueError("empty series")
    table = protect_table({(key, _SERIES): v for key, v in values.items()}, k, fixed,
                          prefix=f"{prefix}{_SERIES}:", atom_of=_series_atom_of(prefix, atom_of))
    # In one column a row total is its cell and the grand total is the column total; the
    # complementary step keeps each such pair suppressed together.
    # An explicit raise, not assert: the invariant must hold under `python -O` too.
    if any(table[(key, _SERIES)] != table[(key, TOTAL)] for key in values) or \
            table[(TOTAL, _SERIES)] != table[(TOTAL, TOTAL)]:
        raise RuntimeError("a one-column table's cells and row totals were suppressed apart")
    out = {key: table[(key, _SERIES)] for key in values}
    out[TOTAL] = table[(TOTAL, TOTAL)]
    return out


def series_statistics(values: Mapping[str, int], published: Mapping[str, int | None], prefix: str = "",
                      atom_of: Callable[[str], "str | Iterable[str]"] | None = None) -> list[Statistic]:
    """The Statistics of a series release: keys f"{prefix}{key}" and f"{prefix}{TOTAL}"."""
    if TOTAL in values:
        raise ValueError(f"{TOTAL!r} is reserved")
    unknown = set(published) - set(values) - {TOTAL}
    if unknown:
        raise ValueError(f"published has keys that are not in the series: {sorted(unknown)[:3]}")
    of = _series_atom_of(prefix, atom_of)
    table = _Table({(key, _SERIES): v for key, v in values.items()}, prefix, of)
    stats = [Statistic(f"{prefix}{key}", table.atoms[(key, _SERIES)], published.get(key),
                       table.value[(key, _SERIES)]) for key in values]
    stats.append(Statistic(f"{prefix}{TOTAL}", table.atoms[(TOTAL, TOTAL)], published.get(TOTAL),
                           table.value[(TOTAL, TOTAL)]))
    return stats


def suppress_rate(numerator_key: Hashable, denominator_key: Hashable,
                  published: Mapping[Hashable, int | None]) -> bool:
    """True when a rate numerator/denominator must not be shown.

    A rate built from a suppressed count would give the count back (rate x published
    denominator), so it is suppressed with it: True when either key is suppressed (None) or
    absent from `published`. Also True for a zero denominator, where there is no rate to show.
    A rate of two published counts adds nothing the counts do not already say.
    """
    numerator = published.get(numerator_key)
    denominator = published.get(denominator_key)
    return numerator is None or denominator is None or denominator == 0
