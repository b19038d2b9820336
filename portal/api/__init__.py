"""JSON API v1: the same services, the same PDP and the same projections as the pages.

`views.py` holds the endpoints (blueprint "api", /api/v1), `openapi.py` the OpenAPI 3.1 document
that describes them. Session-authenticated; browser clients send the CSRF token as X-CSRFToken.
"""
