"""Statistical disclosure control for released count tables (DESIGN.md section 2.3).

Police partners see aggregate counts only; this package decides which counts may be published
so that no small count (1..k-1, k = 11 by default) can be read off or worked out from totals,
other tables or earlier releases, and proves it with linear programming (`audit`).

Pure functions on plain data (numpy/scipy only): no Flask, no database, no other portal module.
"""
from portal.disclosure.audit import AuditError, Statistic, Violation, audit
from portal.disclosure.suppress import (
    TOTAL,
    DisclosureError,
    protect_series,
    protect_table,
    series_statistics,
    suppress_rate,
    table_statistics,
)

__all__ = [
    "TOTAL",
    "AuditError",
    "DisclosureError",
    "Statistic",
    "Violation",
    "audit",
    "protect_series",
    "protect_table",
    "series_statistics",
    "suppress_rate",
    "table_statistics",
]
