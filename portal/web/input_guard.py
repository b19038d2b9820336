"""Refuse control bytes that no field of the portal accepts, before any view sees them.

A NUL byte cannot be stored in a PostgreSQL text column (the driver raises), so without this a
NUL typed into any field answers 500 on PostgreSQL and 200 or 400 on SQLite. One clear 400 at
the edge, the same on every backend, for the query string, form fields and JSON bodies.
"""
from __future__ import annotations

from flask import request

from portal.web.errors import render_error

MESSAGE = "The request contains a NUL character, which no field accepts."


def _has_nul() -> bool:
    if any("\x00" in key or "\x00" in value for key, value in request.args.items(multi=True)):
        return True
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return any("\x00" in key or "\x00" in value for key, value in request.form.items(multi=True))
    if request.is_json:
        body = request.get_data(cache=True)
        return b"\x00" in body or b"\\u0000" in body
    return False


def init_app(app) -> None:
    @app.before_request
    def _refuse_nul_bytes():
        if _has_nul():
            return render_error(400, MESSAGE)
        return None
