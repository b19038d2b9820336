"""RFC 9457 problem details for the API: render_error's shape, plus the API's own members.

A rule's refusal (ValidationFailed) answers 422 with `errors`, a map of field path
(`person.phone`, `consent.expires_on`) to message; a stale or concurrent change 409; a body
that is not a JSON object 400. Each handler rolls the request's session back first.
"""
from __future__ import annotations

import json

from flask import abort, request

from portal.db import get_session
from portal.errors import ConflictError, ServiceError, ValidationFailed
from portal.web.errors import render_error

# render_error knows the generic titles; these two carry the API's own meaning.
TITLES = {409: "Conflict", 422: "Some fields need attention"}


def problem(status: int, detail: str | None = None, **members):
    response = render_error(status, detail)
    body = response.get_json()
    if status in TITLES:
        body["title"] = TITLES[status]
    body.update(members)
    response.set_data(json.dumps(body))
    return response


def json_object(required: bool = False) -> dict:
    """The request's JSON object; an empty body is {} where nothing is required."""
    if not required and not request.get_data(cache=True):
        return {}
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, "Send a JSON object with Content-Type: application/json.")
    return data


def _invalid(failed: ValidationFailed):
    get_session().rollback()
    return problem(422, failed.message, errors=failed.errors)


def _conflict(failed: ConflictError):
    get_session().rollback()
    return problem(409, failed.message)


def _refused(failed: ServiceError):
    get_session().rollback()
    return problem(422, failed.message, errors={failed.field: failed.message} if failed.field else {})


def register(bp) -> None:
    bp.register_error_handler(ValidationFailed, _invalid)
    bp.register_error_handler(ConflictError, _conflict)
    bp.register_error_handler(ServiceError, _refused)
