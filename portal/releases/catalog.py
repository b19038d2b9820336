"""The fixed catalog of released tables, read from policies/disclosure.toml.

There are no filters: a table's only parameter is the release number. A request naming any
other parameter is refused, so no one can carve the data finer than the catalog allows.
"""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

PERIODS = ("month", "quarter")
DIMENSIONS = (None, "zone", "outcome")
STATISTICS = ("count", "median_days_to_first_contact")
PARAMETERS = ("release", "through")


class CatalogError(Exception):
    """The disclosure configuration is unusable; the message names the table and key."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    period: str
    by: str | None = None
    statistic: str = "count"


@dataclass(frozen=True)
class Catalog:
    k: int
    lag_days: int
    tables: dict[str, TableSpec]
    version: str  # hash of the policy files and this configuration


def load_catalog(policy_dir: Path) -> Catalog:
    path = Path(policy_dir) / "disclosure.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{path.name}: {exc}") from None
    k, lag = data.get("k", 11), data.get("lag_days", 30)
    if not isinstance(k, int) or k < 2:
        raise CatalogError(f"{path.name}: k must be a whole number of at least 2")
    if not isinstance(lag, int) or lag < 0:
        raise CatalogError(f"{path.name}: lag_days must be a whole number of days")
    tables = {}
    for name, spec in data.get("tables", {}).items():
        unknown = set(spec) - {"title", "period", "by", "statistic"}
        if unknown:
            raise CatalogError(f"{path.name}: table {name}: unknown key(s) {', '.join(sorted(unknown))}")
        table = TableSpec(name, spec.get("title", name), spec.get("period"), spec.get("by"),
                          spec.get("statistic", "count"))
        if table.period not in PERIODS or table.by not in DIMENSIONS or table.statistic not in STATISTICS:
            raise CatalogError(f"{path.name}: table {name}: period must be one of {PERIODS}, by one of "
                               f"zone/outcome, statistic one of {STATISTICS}")
        if table.statistic != "count" and table.by is not None:
            raise CatalogError(f"{path.name}: table {name}: a median is released citywide only")
        tables[name] = table
    if not tables:
        raise CatalogError(f"{path.name}: no tables")
    return Catalog(k, lag, tables, policy_version(Path(policy_dir)))


def policy_version(policy_dir: Path) -> str:
    """A hash over every policy file, so a release and the transparency page name the rules."""
    digest = hashlib.sha256()
    for path in sorted(policy_dir.glob("*.cedar")) + [policy_dir / "schema.cedarschema",
                                                       policy_dir / "disclosure.toml"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
