"""Friendly error pages and RFC 9457 problem details; never a stack trace."""
from __future__ import annotations

import logging

from flask import jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger("portal.errors")

TITLES = {
    400: "The request could not be understood",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
}


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json", "application/problem+json"])
    return best in ("application/json", "application/problem+json")


def render_error(status: int, detail: str | None = None):
    title = TITLES.get(status, "Error")
    if wants_json():
        body = {"type": "about:blank", "title": title, "status": status}
        if detail:
            body["detail"] = detail
        response = jsonify(body)
        response.status_code = status
        response.mimetype = "application/problem+json"
        return response
    return render_template("errors/error.html", status=status, title=title, detail=detail), status


def _roll_back_request_session() -> None:
    """After a failed flush the request's session refuses every query until rolled back, and the
    error page needs one (its navigation is a policy decision about the signed-in user)."""
    from flask import g
    from sqlalchemy.exc import SQLAlchemyError

    session = g.get("db_session")
    if session is not None:
        try:
            session.rollback()
        except SQLAlchemyError:  # the database itself is gone; the page may still render without it
            log.warning("rollback after an unhandled error failed")


def init_app(app) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(error):
        response = render_error(400, "The form expired or did not come from this site. Reload the page and try again.")
        if request.headers.get("HX-Request") == "true":
            # htmx does not swap an error response: reload the page so the user sees where they stand.
            response = make_response(response)
            response.headers["HX-Refresh"] = "true"
        return response

    @app.errorhandler(HTTPException)
    def _http(error):
        if error.code == 405:
            response = render_error(405)
            return response
        detail = error.description if error.code in (400, 413) and error.description else None
        return render_error(error.code or 500, detail if error.code == 400 else None)

    @app.errorhandler(Exception)
    def _unexpected(error):
        if isinstance(error, HTTPException):
            return _http(error)
        log.exception("unhandled error on %s %s", request.method, request.endpoint)
        _roll_back_request_session()
        return render_error(500)

    @app.errorhandler(InternalServerError)
    def _internal(error):
        return render_error(500)
