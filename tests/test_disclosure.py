"""Disclosure control for released counts (DESIGN.md 2.3): no small count can be read off or worked out.

The audit (linear programming over every release an attacker holds) is the proof; these tests
check the suppressor always produces releases that pass it, and that unsafe releases fail it.
"""
from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from portal.disclosure import (
    TOTAL,
    DisclosureError,
    Statistic,
    audit,
    protect_series,
    protect_table,
    series_statistics,
    suppress_rate,
    table_statistics,
)

K = 11
ZONES = ["N1", "N2", "N3", "N4"]
QUARTERS = ["2026Q1", "2026Q2", "2026Q3", "2026Q4"]
MONTHS = {"Q1": ["2026-01", "2026-02", "2026-03"], "Q2": ["2026-04", "2026-05", "2026-06"]}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def month_atom(m: str, z: str) -> str:
    return f"{m}|{z}"


def quarter_atoms(q: str, z: str) -> set[str]:
    return {month_atom(m, z) for m in MONTHS[q]}


def lines(cells: dict) -> list[list[tuple[str, str]]]:
    """Every linear relation of a table with margins: each row and column with its total."""
    rows = list(dict.fromkeys(r for r, _ in cells)) + [TOTAL]
    cols = list(dict.fromkeys(c for _, c in cells)) + [TOTAL]
    return [[(r, c) for c in cols] for r in rows] + [[(r, c) for r in rows] for c in cols]


def true_values(cells: dict) -> dict:
    rows = list(dict.fromkeys(r for r, _ in cells))
    cols = list(dict.fromkeys(c for _, c in cells))
    out = dict(cells)
    for r in rows:
        out[(r, TOTAL)] = sum(cells[(r, c)] for c in cols)
    for c in cols:
        out[(TOTAL, c)] = sum(cells[(r, c)] for r in rows)
    out[(TOTAL, TOTAL)] = sum(cells.values())
    return out


def primary_only(cells: dict, k: int = K) -> dict:
    return {m: (None if 1 <= v <= k - 1 else v) for m, v in true_values(cells).items()}


def assert_safe(cells: dict, published: dict, k: int = K):
    """The properties every protected release has, audit included."""
    truth = true_values(cells)
    assert set(published) == set(truth)
    for m, v in published.items():
        assert v is None or v == truth[m], f"{m} published {v}, true {truth[m]}"
        assert v is None or not 1 <= v <= k - 1, f"{m} publishes the small count {v}"
    for line in lines(cells):
        hidden = [m for m in line if published[m] is None]
        assert len(hidden) != 1, f"line {line} has a single suppressed member: total minus the rest recovers it"
        if published[line[-1]] is not None:
            together = sum(truth[m] for m in hidden)
            assert not 1 <= together <= k - 1, f"line {line}: total minus the rest gives {together}"
    assert audit(table_statistics(cells, published), k) == []


def zone_quarter_table(tiny: int) -> dict:
    base = [[34, 41, 29, 52], [18, 27, 33, 45], [61, 38, 22, 30], [25, 19, 47, 36]]
    cells = {(z, q): base[i][j] for i, z in enumerate(ZONES) for j, q in enumerate(QUARTERS)}
    cells[("N2", "2026Q3")] = tiny
    return cells


# -- 1. tiny cells -----------------------------------------------------------------------------
@pytest.mark.parametrize("tiny", range(1, 11))
def test_a_tiny_count_is_suppressed_and_cannot_be_worked_out(tiny):
    """A zone with 1..10 referrals in a quarter is suppressed, and neither its row total, its
    column total nor any mix of published numbers recovers it: each line holding a suppressed
    member holds at least two, and the LP audit finds no interval narrow enough."""
    cells = zone_quarter_table(tiny)
    published = protect_table(cells, K)
    assert published[("N2", "2026Q3")] is None
    assert_safe(cells, published)
    # The naive attack, spelled out: total minus the other published cells of the line.
    for line in lines(cells):
        if published[("N2", "2026Q3")] is None and ("N2", "2026Q3") in line:
            assert sum(published[m] is None for m in line) >= 2


# -- 2. an unsafe release fails ----------------------------------------------------------------
@pytest.mark.parametrize("tiny", [1, 5, 10])
def test_primary_suppression_alone_fails_the_audit(tiny):
    """Suppressing only the small cell while publishing every total lets total minus the rest
    recover it; the audit names that cell with its exact value."""
    cells = zone_quarter_table(tiny)
    violations = audit(table_statistics(cells, primary_only(cells)), K)
    named = [v for v in violations if v.key == "N2|2026Q3"]
    assert named and named[0].low == named[0].high == tiny


def test_two_small_cells_must_not_add_up_to_a_small_count():
    """Suppressing 9 and 1 together hides each in [0, 10], wide enough, yet the row total minus
    the published cell says the two add up to 10: a small count about the pair. The audit flags
    that remainder, and the suppressor hides one more cell of the row."""
    cells = {("N1", "Q1"): 30, ("N1", "Q2"): 9, ("N1", "Q3"): 1,
             ("N2", "Q1"): 40, ("N2", "Q2"): 30, ("N2", "Q3"): 25}
    published = true_values(cells)
    for m in [("N1", "Q2"), ("N1", "Q3"), ("N2", "Q2"), ("N2", "Q3")]:
        published[m] = None
    [found] = audit(table_statistics(cells, published), K)
    assert (found.key, found.low, found.high) == ("residual:N1|__total__", 10.0, 10.0)
    assert found.atoms == {"N1|Q1", "N1|Q2", "N1|Q3"}  # the whole row: hiding one more part cures it
    protected = protect_table(cells, K)
    assert protected[("N1", "Q1")] is None
    assert_safe(cells, protected)


# -- 3. random tables --------------------------------------------------------------------------
counts = st.one_of(st.integers(0, 15), st.integers(0, 15), st.integers(0, 200))


@st.composite
def tables(draw):
    n_rows, n_cols = draw(st.integers(2, 6)), draw(st.integers(1, 5))
    return {(f"r{i}", f"c{j}"): draw(counts) for i in range(n_rows) for j in range(n_cols)}


@FAST
@given(cells=tables(), k=st.sampled_from([5, 11]))
def test_random_tables_always_pass_the_audit(cells, k):
    """Whatever the table: nothing published is 1..k-1, every published total is the true sum,
    no line has a lone suppressed member, and the LP audit finds no violation."""
    assert_safe(cells, protect_table(cells, k), k)


# -- 4. across releases ------------------------------------------------------------------------
MONTHLY = {
    "2026-01": {"N1": 0, "N2": 25, "N3": 30},
    "2026-02": {"N1": 0, "N2": 0, "N3": 28},
    "2026-03": {"N1": 5, "N2": 0, "N3": 33},
    "2026-04": {"N1": 30, "N2": 40, "N3": 35},
    "2026-05": {"N1": 20, "N2": 15, "N3": 26},
    "2026-06": {"N1": 22, "N2": 19, "N3": 31},
}


def months_and_quarters():
    a_cells = {(m, z): MONTHLY[m][z] for m in MONTHLY for z in ["N1", "N2", "N3"]}
    a_pub = protect_table(a_cells, K, prefix="A:", atom_of=month_atom)
    a_stats = table_statistics(a_cells, a_pub, prefix="A:", atom_of=month_atom)
    b_cells = {(q, z): sum(MONTHLY[m][z] for m in MONTHS[q]) for q in MONTHS for z in ["N1", "N2", "N3"]}
    return a_stats, b_cells


def b_stats(b_cells, published):
    return table_statistics(b_cells, published, prefix="B:", atom_of=quarter_atoms)


def test_a_second_table_over_the_same_months_is_protected_against_the_first():
    """Quarters x zones protected with the monthly table as `fixed`: the two together still pin
    nothing, although the monthly table publishes every month of N2 in Q1."""
    a_stats, b_cells = months_and_quarters()
    assert audit(a_stats, K) == []
    b_pub = protect_table(b_cells, K, a_stats, prefix="B:", atom_of=quarter_atoms)
    assert b_pub[("Q1", "N1")] is None
    assert audit(a_stats + b_stats(b_cells, b_pub), K) == []


def test_a_second_table_protected_on_its_own_is_undone_by_the_first():
    """Each table safe alone is not enough: Q1 total minus N2's published months recovers Q1|N1.
    Primary suppression alone fails too."""
    a_stats, b_cells = months_and_quarters()
    alone = protect_table(b_cells, K, prefix="B:", atom_of=quarter_atoms)
    assert audit(b_stats(b_cells, alone), K) == []  # fine in isolation...
    combined = audit(a_stats + b_stats(b_cells, alone), K)
    assert any(v.key == "B:Q1|N1" and v.low == v.high == 5 for v in combined)  # ...not together
    assert any(v.key == "B:Q1|N1" for v in audit(a_stats + b_stats(b_cells, primary_only(b_cells)), K))


# -- 5. one more person ------------------------------------------------------------------------
# Release 2 covers a later, overlapping window; each layout maps its columns to months.
LAYOUTS = {
    "year to date": {"M1-4": [1, 2, 3, 4]},
    "rolling": {"M2-3": [2, 3], "M4": [4]},
    "monthly": {"M2": [2], "M3": [3], "M4": [4]},
    "halves": {"M1-2": [1, 2], "M3-4": [3, 4]},
}


@st.composite
def histories(draw):
    zones = [f"Z{i}" for i in range(draw(st.integers(2, 4)))]
    history = {(m, z): draw(counts) for m in range(1, 5) for z in zones}
    return zones, history, draw(st.sampled_from(zones)), draw(st.sampled_from(sorted(LAYOUTS)))


def two_releases(zones, history, person_zone, layout, protect_second_with_first=True):
    """R1: zones x months 1..3 from D. R2: zones x the layout's windows from D plus one person
    in month 4 of person_zone."""
    atom = lambda z, m: f"{m}|{z}"  # noqa: E731
    r1_cells = {(z, f"M{m}"): history[(m, z)] for z in zones for m in range(1, 4)}
    r1_atoms = lambda z, col: atom(z, int(col[1:]))  # noqa: E731
    r1 = table_statistics(r1_cells, protect_table(r1_cells, K, prefix="R1:", atom_of=r1_atoms),
                          prefix="R1:", atom_of=r1_atoms)
    later = dict(history)
    later[(4, person_zone)] += 1
    windows = LAYOUTS[layout]
    r2_cells = {(z, col): sum(later[(m, z)] for m in ms) for z in zones for col, ms in windows.items()}
    r2_atoms = lambda z, col: {atom(z, m) for m in windows[col]}  # noqa: E731
    fixed = r1 if protect_second_with_first else ()
    r2_pub = protect_table(r2_cells, K, fixed, prefix="R2:", atom_of=r2_atoms)
    return r1, table_statistics(r2_cells, r2_pub, prefix="R2:", atom_of=r2_atoms)


@FAST
@given(case=histories())
@example(case=(["Z0", "Z1", "Z2"], {(m, z): 0 for m in range(1, 5) for z in ["Z0", "Z1"]}
               | {(1, "Z2"): 11, (2, "Z2"): 9, (3, "Z2"): 1, (4, "Z2"): 0}, "Z0", "monthly"))
def test_one_more_person_cannot_be_pinned_across_releases(case):
    """A later release over an overlapping period, computed from the same history plus one
    person, protected with the earlier release as `fixed`: together they pin no small count,
    released or not (the audit also checks each month-zone atom nobody released)."""
    r1, r2 = two_releases(*case)
    assert audit(r1 + r2, K) == []


def test_year_to_date_minus_the_quarter_would_pin_the_new_person():
    """Without `fixed`, Jan-Apr minus the published Jan-Mar gives April's count exactly: one
    person. The audit catches it as an atom nobody released; with `fixed` it is protected."""
    zones = ["Z0", "Z1"]
    history = {(m, z): 20 + m for m in range(1, 5) for z in zones}
    history[(4, "Z0")] = 0
    r1, r2 = two_releases(zones, history, "Z0", "year to date", protect_second_with_first=False)
    found = audit(r1 + r2, K)
    assert [(v.key, v.low, v.high, v.atoms) for v in found] == [("atom:4|Z0", 1.0, 1.0, {"4|Z0"})]
    r1, r2 = two_releases(zones, history, "Z0", "year to date")
    assert audit(r1 + r2, K) == []


# -- 6. size -----------------------------------------------------------------------------------
def test_a_twenty_by_twelve_table_is_protected():
    """A city-sized table (20 zones x 12 months, many small counts) protects and passes."""
    rng = random.Random(20260101)
    cells = {(f"Z{i:02d}", f"2026-{j:02d}"): rng.choice([0, rng.randint(1, 15), rng.randint(11, 120)])
             for i in range(20) for j in range(1, 13)}
    assert_safe(cells, protect_table(cells, K))


# -- the audit itself --------------------------------------------------------------------------
def test_audit_counts_a_fully_suppressed_table_as_safe():
    """No published equation bounds an atom from above: infinitely wide intervals are safe."""
    cells = {("a", "x"): 3, ("a", "y"): 4, ("b", "x"): 5, ("b", "y"): 6}
    assert audit(table_statistics(cells, {}), K) == []


def test_audit_flags_a_published_small_count():
    """A small count that was published (a primary suppression missed) is itself a violation."""
    stats = [Statistic("x", frozenset({"a"}), 3, 3)]
    assert [v.key for v in audit(stats, K)] == ["x"]


def test_audit_refuses_contradicting_releases():
    """Releases that disagree about the same people (a revised history) cannot be audited as one."""
    stats = [Statistic("r1", frozenset({"a", "b"}), 20, 20), Statistic("r2", frozenset({"a", "b"}), 21, 21),
             Statistic("a", frozenset({"a"}), None, 4)]
    with pytest.raises(ValueError, match="contradict"):
        audit(stats, K)
    with pytest.raises(ValueError, match="share the key"):
        audit([Statistic("x", frozenset({"a"}), 0, 0), Statistic("x", frozenset({"b"}), 0, 0)], K)


def test_audit_flags_a_small_count_narrowed_but_not_pinned():
    """An interval narrower than k-1 around a small count is a violation even when not exact;
    a wide one is not, and a suppressed count of k or more is not held to the width rule."""
    # a + b = 20, b + e = 30, e + f = 13: e <= 13, so b >= 17 and a lies in [0, 3].
    narrow = [Statistic("ab", frozenset({"a", "b"}), 20, 20), Statistic("be", frozenset({"b", "e"}), 30, 30),
              Statistic("ef", frozenset({"e", "f"}), 13, 13), Statistic("a", frozenset({"a"}), None, 3)]
    assert [(v.key, v.low, v.high) for v in audit(narrow, K)] == [("a", 0.0, 3.0)]
    wide = [Statistic("sum", frozenset({"a", "b"}), 25, 25), Statistic("a", frozenset({"a"}), None, 3),
            Statistic("b", frozenset({"b"}), None, 22)]
    assert audit(wide, K) == []


def test_protect_table_raises_when_earlier_releases_already_disclose():
    """If the fixed statistics pin a small count on their own, no suppression here can help."""
    fixed = [Statistic("old", frozenset({"x|c"}), None, 4), Statistic("old total", frozenset({"x|c"}), 4, 4)]
    with pytest.raises(DisclosureError):
        protect_table({("x", "c"): 4, ("y", "c"): 30}, K, fixed)


# -- series, rates, purity ---------------------------------------------------------------------
def test_a_series_hides_a_small_value_with_a_second_one():
    """One column with its total: the small month and one more are suppressed; the audit passes."""
    values = {"2026-01": 40, "2026-02": 3, "2026-03": 25, "2026-04": 0}
    published = protect_series(values, K)
    assert published == {"2026-01": 40, "2026-02": None, "2026-03": None, "2026-04": 0, TOTAL: 68}
    assert audit(series_statistics(values, published), K) == []


def test_a_rate_is_suppressed_with_its_count():
    """A rate over a published denominator would give a suppressed numerator back."""
    published = {"referred": None, "eligible": 40, "accepted": 12, "none": 0}
    assert suppress_rate("referred", "eligible", published)
    assert not suppress_rate("accepted", "eligible", published)
    assert suppress_rate("accepted", "missing", published)
    assert suppress_rate("accepted", "none", published)


def test_tables_are_validated():
    """Labels cannot collide with the total marker or the key separator; cells partition atoms."""
    with pytest.raises(ValueError):
        protect_table({("a|b", "x"): 1}, K)
    with pytest.raises(ValueError):
        protect_table({(TOTAL, "x"): 1}, K)
    with pytest.raises(ValueError, match="full grid"):
        protect_table({("a", "x"): 1, ("b", "y"): 2}, K)
    with pytest.raises(ValueError, match="share an atom"):
        protect_table({("a", "x"): 1, ("b", "x"): 2}, K, atom_of=lambda r, c: "same")


def test_the_package_is_pure():
    """portal.disclosure imports no web framework, database layer or other portal module."""
    allowed = {"__future__", "collections", "dataclasses", "math", "typing", "numpy", "scipy", "portal"}
    for path in (Path(__file__).parents[1] / "portal" / "disclosure").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                assert not name.startswith("portal.") or name.startswith("portal.disclosure"), name
