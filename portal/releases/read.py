"""Reading published releases: the only path from the database to a police partner's screen.

It reads the releases table and nothing else; what it shows was fixed when the release was
published. The declared parameters are the release number and an optional last month.
"""
from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.disclosure import TOTAL
from portal.models import Release
from portal.releases.catalog import PARAMETERS, Catalog
from portal.releases.queries import OUTCOME_CLASSES

TOTAL_LABEL = "total"


class BadRequest(Exception):
    """A parameter the catalog does not declare, or a value it does not allow."""


def parse_parameters(args: dict) -> dict:
    unknown = sorted(set(args) - set(PARAMETERS))
    if unknown:
        raise BadRequest(f"Unknown parameter(s): {', '.join(unknown)}. This table takes only: "
                         f"{', '.join(PARAMETERS)}.")
    params = {}
    if args.get("release"):
        if not str(args["release"]).isdigit():
            raise BadRequest("release must be a release number.")
        params["release"] = int(args["release"])
    if args.get("through"):
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", str(args["through"])):
            raise BadRequest("through must be a month such as 2026-03; periods finer than a month are never released.")
        params["through"] = args["through"]
    return params


def releases(db: Session, upto: int | None = None) -> list[Release]:
    query = select(Release).order_by(Release.number)
    if upto is not None:
        query = query.where(Release.number <= upto)
    return list(db.scalars(query))


def table_view(db: Session, catalog: Catalog, name: str, release: int | None = None,
               through: str | None = None) -> dict:
    spec = catalog.tables.get(name)
    if spec is None:
        raise BadRequest(f"There is no table {name!r}. Tables: {', '.join(catalog.tables)}.")
    published = releases(db, release)
    if release is not None and (not published or published[-1].number != release):
        raise BadRequest(f"There is no release {release}.")
    latest = published[-1] if published else None
    clamped = False
    # A correction restates an older month: the data reaches as far as the furthest release.
    released_through = max(r.released_through for r in published).strftime("%Y-%m") if published else None
    if through and released_through and through > released_through:
        through, clamped = released_through, True
    marker = f"<{catalog.k}"
    by_period: dict[str, dict] = {}
    for each in published:
        content = each.tables.get(name)
        if content and (not through or _last_month(content["period"]) <= through):
            by_period[content["period"]] = content["values"]
    columns = _columns(spec, by_period)
    rows = [[period] + [marker if values.get(c) is None else values.get(c) for c in columns]
            for period, values in sorted(by_period.items())]
    return {"table": name, "title": spec.title, "release": latest.number if latest else None,
            "columns": ["period"] + [TOTAL_LABEL if c == TOTAL else c for c in columns], "rows": rows,
            "suppressed_marker": marker, "k": catalog.k, "released_through": released_through,
            "clamped": clamped, "lag_days": catalog.lag_days}


def _last_month(period: str) -> str:
    if "-Q" in period:
        year, quarter = period.split("-Q")
        return f"{year}-{int(quarter) * 3:02d}"
    return period


def _columns(spec, by_period) -> list[str]:
    if spec.statistic == "median_days_to_first_contact":
        return ["median_days"]
    seen = {key for values in by_period.values() for key in values}
    if spec.by == "outcome":
        order = [o for o in OUTCOME_CLASSES if o in seen]
    else:
        order = sorted(k for k in seen if k != TOTAL)
    return order + ([TOTAL] if TOTAL in seen else [])
