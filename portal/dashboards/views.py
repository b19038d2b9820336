"""The city dashboard: one page (and its htmx partial) of aggregate tables, and a CSV of each.

Thin: parse the filters, let queries.py compute the tables in the database, render. Bad filter
input answers 400 with the reason beside the field, and nothing is computed. These are live
numbers for the city office alone (dashboard.view, dashboard.export); police partners read
published releases elsewhere, never this page.
"""
from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import date, timedelta

from flask import Blueprint, Response, abort, make_response, render_template, request
from sqlalchemy.orm import Session

from portal.audit import trail
from portal.auth.step_up import fresh_second_factor
from portal.dashboards import charts, queries
from portal.db import get_session, utcnow
from portal.policy import Action
from portal.policy.gate import require
from portal.referrals import codes
from portal.web.htmx import is_htmx, page_or_partial

bp = Blueprint("dashboards", __name__, url_prefix="/dashboards")

PAGE, PARTIAL = "dashboards/city.html", "partials/dashboard_tables.html"
DEFAULT_DAYS = 84  # twelve weeks
MAX_DAYS = 3660  # ten years: bounds the size of a weekly table
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
KIND_GROUPS = {"hospital_program": "Hospital programs", "cvi_team": "CVI teams",
               "service_provider": "Service providers"}


def parse_filters(args, ref: queries.Reference, today: date) -> tuple[queries.Filters | None, dict, dict]:
    """(filters, errors by field, the values to show in the form). Empty means "all" / the default."""
    values = {name: (args.get(name) or "").strip() for name in ("from", "to", "period", "zone", "team", "sender",
                                                                 "urgency")}
    errors: dict[str, str] = {}

    def day(name: str) -> date | None:
        if not values[name]:
            return None
        try:
            if ISO_DATE.fullmatch(values[name]):
                return date.fromisoformat(values[name])
        except ValueError:
            pass
        errors[name] = "Enter a date as YYYY-MM-DD."
        return None

    end, start = day("to"), day("from")
    end = end or (today if "to" not in errors else None)
    start = start or (end - timedelta(days=DEFAULT_DAYS - 1) if end and "from" not in errors else None)
    if start and end and start > end:
        errors["from"] = "The start date is after the end date."
    elif start and end and (end - start).days >= MAX_DAYS:
        errors["from"] = "Choose a range of at most ten years."
    period = values["period"] or "week"
    if period not in queries.PERIODS:
        errors["period"] = "Choose week or month."
    zone_id = None
    if values["zone"]:
        zone_id = next((zid for zid, (code, _) in ref.zones.items() if code == values["zone"].upper()), None)
        if zone_id is None:
            errors["zone"] = "Not a known zone."
    receiver_id = _org(values["team"], ref, "team", "Not a known receiving organization.", errors)
    sender_id = _org(values["sender"], ref, "sender", "Not a known sending organization.", errors)
    urgency = values["urgency"] or None
    if urgency is not None and urgency not in codes.URGENCIES:
        errors["urgency"] = "Choose routine or urgent."
    if errors:
        return None, errors, values
    values.update({"from": start.isoformat(), "to": end.isoformat(), "period": period, "zone": values["zone"].upper()})
    return queries.Filters(start, end, period, zone_id, receiver_id, sender_id, urgency), errors, values


def _org(value: str, ref: queries.Reference, name: str, message: str, errors: dict) -> uuid.UUID | None:
    if not value:
        return None
    try:
        org_id = uuid.UUID(value)
    except ValueError:
        org_id = None
    if org_id not in ref.orgs:
        errors[name] = message
        return None
    return org_id


def _query_args(values: dict) -> dict:
    """The filters as URL arguments (for the CSV links), empty ones left out."""
    return {k: v for k, v in values.items() if v}


def _form_context(db: Session):
    ref = queries.reference(db)
    orgs_by_kind = {label: [(oid, name) for oid, (name, kind) in ref.orgs.items() if kind == k]
                    for k, label in KIND_GROUPS.items()}
    return ref, {"zones": ref.zones, "orgs_by_kind": orgs_by_kind, "periods": queries.PERIODS,
                 "urgencies": codes.URGENCIES}


@bp.get("/city")
@require(Action.DASHBOARD_VIEW)
def city():
    db = get_session()
    ref, form = _form_context(db)
    filters, errors, values = parse_filters(request.args, ref, utcnow().date())
    if errors:
        response = make_response(render_template(PAGE, errors=errors, values=values, **form), 400)
        if is_htmx():  # htmx swaps no error response: let the browser load the page that explains
            response.headers["HX-Redirect"] = request.full_path
        return response
    trail.note(table="all", filters=_audited(filters))
    tables = queries.build_tables(db, filters, ref)
    context = {"tables": [(t, charts.for_table(t)) for t in tables], "summary": _summary(tables),
               "filters": filters, "values": values, "query": _query_args(values), "errors": {}, **form}
    return page_or_partial(PAGE, PARTIAL, swap=is_htmx(), **context)


def _audited(filters: queries.Filters) -> dict:
    """The validated filters, as the audit log records them (ids and codes, never free text)."""
    return {key: str(value) for key, value in vars(filters).items() if value is not None}


def _summary(tables: list[queries.Table]) -> dict:
    by = {t.slug: t for t in tables}
    times = by["response-times"].totals
    return {"referrals": by["by-status"].totals[-1], "acceptance": by["acceptance"].totals[-1],
            "median_accept": times[2], "median_contact": times[5]}


@bp.get("/city/export/<table>.csv")
@fresh_second_factor  # a code within the last minutes, before the policy decision (auth/step_up.py)
@require(Action.DASHBOARD_EXPORT)
def export(table: str):
    """One table as CSV, same filters as the page: the header row, the rows, then the totals."""
    if table not in queries.TABLES:
        abort(404)
    db = get_session()
    ref = queries.reference(db)
    filters, errors, _ = parse_filters(request.args, ref, utcnow().date())
    if errors:
        abort(400, description=" ".join(f"{name}: {message}" for name, message in errors.items()))
    trail.note(table=table, filters=_audited(filters))
    result = queries.build_table(db, filters, ref, table)
    filename = f"city-{table}-{filters.start.isoformat()}-to-{filters.end.isoformat()}-{filters.period}.csv"
    return Response(_csv_lines(result), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _csv_lines(table: queries.Table):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in (table.columns, *table.rows, table.totals):
        writer.writerow([_cell(v) for v in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _cell(value) -> str:
    """Numbers as shown on the page; text that a spreadsheet would run as a formula is defused."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
    return str(value)
