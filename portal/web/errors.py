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
    503: "Briefly unavailable",
}
# A database connection lost mid-request (a failover, a restart, a terminated backend): the
# request's transaction is gone and the pool has dropped the connection, so a retry works.
UNAVAILABLE = ("The portal lost its connection to the database for a moment. Reload to see where things "
               "stand, then try again.")


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


def database_unavailable(error) -> bool:
    """Whether `error` is a lost or refused database connection rather than a bug."""
    from sqlalchemy.exc import DBAPIError, OperationalError
    return isinstance(error, OperationalError) or (isinstance(error, DBAPIError) and error.connection_invalidated)


def _unavailable(error):
    """503 with a page (or problem details) that says what happened, and Retry-After."""
    log.warning("database unavailable on %s %s: %s", request.method, request.endpoint,
                type(getattr(error, "orig", None) or error).__name__)
    _roll_back_request_session()
    response = make_response(render_error(503, UNAVAILABLE))
    response.headers["Retry-After"] = "1"
    return response


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
        if database_unavailable(error):
            return _unavailable(error)
        log.exception("unhandled error on %s %s", request.method, request.endpoint)
        _roll_back_request_session()
        return render_error(500)

    @app.errorhandler(InternalServerError)
    def _internal(error):
        # also where an error after the view lands (the audit log's commit in after_request)
        if database_unavailable(error.original_exception):
            return _unavailable(error.original_exception)
        return render_error(500)
