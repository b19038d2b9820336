"""Aggregate pages: published releases for police partners and the city; the ledger for the city.

Police-facing: imports only the releases reader. No live query, no referral table, no filter
beyond the catalog's declared parameters.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, request

from portal.audit import trail
from portal.db import get_session
from portal.policy import Action
from portal.policy.gate import require
from portal.releases.read import BadRequest, parse_parameters, releases, table_view
from portal.web.errors import render_error

bp = Blueprint("aggregates", __name__, url_prefix="/aggregates")
api = Blueprint("api_aggregates", __name__, url_prefix="/api/v1/aggregates")


def catalog():
    return current_app.extensions["portal.catalog"]


def _view(name: str) -> dict:
    params = parse_parameters(request.args.to_dict())
    if name in catalog().tables:  # only declared names and validated parameters reach the log
        trail.note(table=name, parameters={k: str(v) for k, v in params.items()})
    view = table_view(get_session(), catalog(), name, **params)
    trail.note(release=view["release"])
    return view


@bp.get("/")
@require(Action.AGGREGATE_VIEW)
def index():
    published = releases(get_session())
    return render_template("aggregates/index.html", catalog=catalog(), latest=published[-1] if published else None)


@bp.get("/<name>")
@require(Action.AGGREGATE_VIEW)
def table(name):
    try:
        view = _view(name)
    except BadRequest as error:
        return render_error(400, str(error))
    return render_template("aggregates/table.html", view=view, catalog=catalog())


@bp.get("/ledger")
@require(Action.RELEASE_LEDGER)
def ledger():
    return render_template("aggregates/ledger.html", releases=list(reversed(releases(get_session()))),
                           catalog=catalog())


@api.get("")
@require(Action.AGGREGATE_VIEW)
def api_index():
    published = releases(get_session())
    latest = published[-1] if published else None
    return {"items": [{"table": name, "title": spec.title, "period": spec.period, "by": spec.by,
                       "parameters": ["release", "through"]} for name, spec in catalog().tables.items()],
            "release": latest.number if latest else None,
            "released_through": latest.released_through.isoformat() if latest else None,
            "k": catalog().k, "lag_days": catalog().lag_days}


@api.get("/<name>")
@require(Action.AGGREGATE_VIEW)
def api_table(name):
    try:
        view = _view(name)
    except BadRequest as error:
        return render_error(400, str(error))
    return jsonify({key: view[key] for key in ("table", "release", "columns", "rows", "suppressed_marker", "k",
                                               "released_through", "clamped")})


