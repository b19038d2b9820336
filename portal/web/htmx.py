"""One template serves both the full page and the htmx swap."""
from flask import render_template, request


def is_htmx() -> bool:
    """An htmx swap, but not a history restore (Back/Forward), which needs the whole page."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def page_or_partial(page: str, partial: str, **context):
    """The whole page for a normal request, only the partial for an htmx request."""
    return render_template(partial if is_htmx() else page, **context)
