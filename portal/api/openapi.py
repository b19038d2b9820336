"""The OpenAPI 3.1 description of API v1, its enums taken from the referral vocabularies.

Written out by hand, path by path, so that it is a statement a test can hold the routes to:
every rule under /api/v1 is described here, and everything described here is a rule.
"""
from __future__ import annotations

from portal.policy import Action
from portal.referrals import codes, inputs, queries

MAX_LIMIT = 200  # the largest page a list answers


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _enum(vocabulary) -> dict:
    return {"type": "string", "enum": list(vocabulary)}


def _text(max_length: int, nullable: bool = True) -> dict:
    return {"type": ["string", "null"] if nullable else "string", "maxLength": max_length}


UUID = {"type": "string", "format": "uuid"}
TIME = {"type": ["string", "null"], "format": "date-time"}
ORG_REF = {"type": "object", "properties": {"id": UUID, "name": {"type": "string"}}}


def _schemas() -> dict:
    consent_fields = {
        "method": _enum(codes.CONSENT_METHODS),
        "data_categories": {"type": "array", "items": _enum(codes.DATA_CATEGORIES), "uniqueItems": True,
                            "description": "What the consent releases; codes always travel."},
        "expires_on": {"type": "string", "format": "date",
                       "description": f"Defaults to {inputs.CONSENT_DEFAULT_DAYS} days from now; "
                                      f"at most {inputs.CONSENT_MAX_DAYS}."},
    }
    summary = {
        "id": UUID, "status": _enum(codes.STATUSES), "status_label": {"type": "string"},
        "fhir_status": _enum(sorted(set(codes.FHIR_TASK_STATUS.values()))),
        "status_reason": {"type": ["string", "null"]}, "outcome": {"type": ["string", "null"]},
        "urgency": _enum(codes.URGENCIES), "zone": {"type": "string"}, "age_band": _enum(codes.AGE_BANDS),
        "reason": _enum(codes.REASONS), "services": {"type": "array", "items": _enum(codes.SERVICES)},
        "sender": ORG_REF, "receiver": ORG_REF, "created_at": {"type": "string", "format": "date-time"},
        "accepted_at": TIME, "first_contact_at": TIME, "closed_at": TIME, "handed_off": {"type": "boolean"},
        "consent_active": {"type": "boolean"},
        "allowed": {"type": "array", "items": _enum(a.value for a in Action),
                    "description": "The actions the caller may take on this referral."},
        "assigned_to": {"type": ["object", "null"], "properties": {"id": UUID, "name": {"type": "string"}},
                        "description": "Receiving team only."},
        "retaliation_risk": {"type": "boolean", "description": "Receiving team only."},
    }
    return {
        "Problem": {
            "type": "object", "required": ["type", "title", "status"],
            "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                           "detail": {"type": "string"},
                           "errors": {"type": "object", "additionalProperties": {"type": "string"},
                                      "description": "422 only: field path (e.g. person.phone) → message."}},
        },
        "Organization": {
            "type": "object",
            "properties": {"id": UUID, "name": {"type": "string"},
                           "kind": _enum(codes.EXCHANGE_KINDS), "zones": {"type": "array", "items": {"type": "string"}},
                           "intake": _enum(("open", "waitlist", "at_capacity"))},
        },
        "Person": {
            "type": "object", "required": ["preferred_name", "phone"],
            "properties": {
                "preferred_name": _text(80, nullable=False),
                "phone": {"type": "string", "maxLength": 32, "description": "Stored as E.164."},
                "best_time": _text(80), "language": _text(40),
                "safe_to_text": {"type": "boolean"}, "safe_voicemail": {"type": "boolean"},
                "code_word": _text(40),
            },
        },
        "NewConsent": {
            "type": "object", "required": ["method", "recipient_org_ids"],
            "properties": {"recipient_org_ids": {"type": "array", "items": UUID, "minItems": 1}, **consent_fields},
        },
        "HandoffConsent": {
            "type": "object", "required": ["method"], "properties": consent_fields,
            "description": "A consent recorded now; it names the new receiver.",
        },
        "NewReferral": {
            "type": "object",
            "required": ["receiver_org_id", "person", "age_band", "zone", "reason", "services", "consent"],
            "properties": {
                "receiver_org_id": UUID, "person": _ref("Person"), "age_band": _enum(codes.AGE_BANDS),
                "zone": {"type": "string", "maxLength": 16}, "reason": _enum(codes.REASONS),
                "services": {"type": "array", "items": _enum(codes.SERVICES), "minItems": 1},
                "urgency": {**_enum(codes.URGENCIES), "default": "routine"},
                "note": _text(codes.NOTE_MAX), "consent": _ref("NewConsent"),
            },
        },
        "ReferralSummary": {
            "type": "object", "properties": {**summary, "preferred_name": {"type": ["string", "null"]}},
            "description": "A list row; preferred_name only where the caller may read contact details.",
        },
        "Referral": {
            "type": "object",
            "description": "Only the fields the caller's decisions allow: person and note only while the "
                           "consent releases them to the receiver; contact_attempts to the receiving team.",
            "properties": {
                **summary,
                "events": {"type": "array", "items": {"type": "object", "properties": {
                    "at": {"type": "string", "format": "date-time"}, "from": {"type": ["string", "null"]},
                    "to": {"type": "string"}, "reason": {"type": ["string", "null"]}}}},
                "person": {"oneOf": [_ref("Person"), {"type": "null"}]},
                "note": {"type": ["string", "null"]},
                "contact_attempts": {"type": "array", "items": {"type": "object", "properties": {
                    "id": UUID, "at": {"type": "string", "format": "date-time"},
                    "outcome": _enum(codes.CONTACT_OUTCOMES), "worker": {"type": ["string", "null"]},
                    "note": {"type": ["string", "null"]}}}},
            },
        },
    }


def _body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _object(required: list[str], **properties) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def _ok(description: str, schema: dict, status: str = "200", located: bool = False) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if located:
        answer["headers"] = {"Location": {"schema": {"type": "string"}}}
    return {status: answer}


def _errors(*statuses: int) -> dict:
    return {str(s): {"$ref": f"#/components/responses/{s}"} for s in (401, *statuses)}


def _work(summary: str, action: Action, body: dict | None = None, status: str = "200") -> dict:
    """A POST on one referral: 404 when the caller may not see it or may not do this."""
    operation = {"summary": summary, "x-portal-action": action.value,
                 "parameters": [{"$ref": "#/components/parameters/referral_id"}],
                 "responses": {**_ok("The referral as the caller now sees it.", _ref("Referral"), status),
                               "204": {"description": "Done; the caller may no longer see the referral."},
                               **_errors(400, 404, 409, 422)}}
    if body is not None:
        operation["requestBody"] = body
    return {"post": operation}


def _reason(vocabulary) -> dict:
    return _body(_object(["reason"], reason=_enum(vocabulary)))


def _read(summary: str, action: str, responses: dict, parameters: list | None = None) -> dict:
    operation = {"summary": summary, "x-portal-action": action, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


EMPTY = _body({"type": "object"}, required=False)


def _paths() -> dict:
    referral = "/referrals/{referral_id}"
    directory = _object(["items"], items={"type": "array", "items": _ref("Organization")})
    page = _object(["items", "limit", "offset"], items={"type": "array", "items": _ref("ReferralSummary")},
                   limit={"type": "integer"}, offset={"type": "integer"})
    lists = [
        {"name": "box", "in": "query", "schema": {"type": "string", "enum": ["inbox", "sent"], "default": "inbox"}},
        {"name": "status", "in": "query", "description": "Inbox only; default: the open statuses.",
         "schema": _enum(codes.STATUSES)},
        {"name": "limit", "in": "query",
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": queries.PAGE_SIZE}},
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
    ]
    idempotency = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": "A random (version 4) UUID; it becomes the referral's id, so a repeat sends "
                                  "once (200 with the referral sent the first time).",
                   "schema": {"type": "string", "format": "uuid"}}
    document = {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "/directory": _read("Organizations the caller may send referrals to", Action.REFERRAL_CREATE.value,
                            {**_ok("The directory.", directory), **_errors(403)}),
        "/referrals": {
            **_read("The caller's inbox or sent list, newest first (the inbox urgent first)",
                    f"{Action.REFERRAL_LIST_INBOX.value} | {Action.REFERRAL_LIST_SENT.value}",
                    {**_ok("One page.", page), **_errors(400, 403)}, lists),
            "post": {"summary": "Send a referral under the consent recorded with it",
                     "x-portal-action": Action.REFERRAL_CREATE.value, "parameters": [idempotency],
                     "requestBody": _body(_ref("NewReferral")),
                     "responses": {**_ok("Sent.", _ref("Referral"), "201", located=True),
                                   **_ok("Already sent with this Idempotency-Key.", _ref("Referral"), located=True),
                                   **_errors(400, 403, 422)}},
        },
        referral: _read("One referral, as far as the caller may see it", Action.REFERRAL_VIEW_STATUS.value,
                        {**_ok("The referral.", _ref("Referral")), **_errors(404)},
                        [{"$ref": "#/components/parameters/referral_id"}]),
        f"{referral}/accept": _work("Accept", Action.REFERRAL_ACCEPT, EMPTY),
        f"{referral}/decline": _work("Decline", Action.REFERRAL_DECLINE, _reason(codes.DECLINE_REASONS)),
        f"{referral}/hold": _work("Put on hold", Action.REFERRAL_HOLD, _reason(codes.HOLD_REASONS)),
        f"{referral}/resume": _work("Resume", Action.REFERRAL_RESUME, EMPTY),
        f"{referral}/complete": _work("Close with an outcome", Action.REFERRAL_COMPLETE,
                                      _body(_object(["outcome"], outcome=_enum(codes.COMPLETION_OUTCOMES)))),
        f"{referral}/cancel": _work("Cancel", Action.REFERRAL_CANCEL, _reason(codes.CANCEL_REASONS)),
        f"{referral}/assign": _work(
            "Assign to a worker of the receiving team, or unassign with null", Action.REFERRAL_ASSIGN,
            _body(_object(["user_id"], user_id={"type": ["string", "null"], "format": "uuid"}))),
        f"{referral}/contact-attempts": _work(
            "Log an attempt to reach the person", Action.REFERRAL_LOG_CONTACT,
            _body(_object(["outcome"], outcome=_enum(codes.CONTACT_OUTCOMES), note=_text(codes.NOTE_MAX))), "201"),
        f"{referral}/handoff": _work(
            "Hand off to an organization the consent names, or under a consent recorded now",
            Action.REFERRAL_HANDOFF,
            _body(_object(["receiver_org_id"], receiver_org_id=UUID, consent=_ref("HandoffConsent"))), "201"),
        f"{referral}/consent/revoke": _work("Record that the person withdrew consent (shreds the details)",
                                            Action.REFERRAL_REVOKE_CONSENT, EMPTY),
        "/openapi.json": _read("This document", Action.HOME_VIEW.value, {"200": document, **_errors()}),
        "/aggregates": _read("The published tables the caller may see (police partners and the city office)",
                             Action.AGGREGATE_VIEW.value,
                             {**_ok("The catalog and the latest release.", {"type": "object"}), **_errors(403)}),
        "/aggregates/{name}": _read(
            "One published table, as of a release; no other parameter exists", Action.AGGREGATE_VIEW.value,
            {**_ok("The table: {table, release, columns, rows, suppressed_marker, k, released_through, clamped}.",
                   {"type": "object"}), **_errors(400, 403)},
            [{"name": "name", "in": "path", "required": True, "description": "The table.", "schema": {"type": "string"}},
             {"name": "release", "in": "query", "schema": {"type": "integer", "minimum": 1}},
             {"name": "through", "in": "query", "description": "Last month, such as 2026-03; clamped to the "
                                                               "latest release.",
              "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}}]),
    }


PROBLEMS = {400: "Malformed request: not a JSON object, bad parameters, or a missing or wrong X-CSRFToken.",
            401: "No session: sign in.", 403: "The caller's organization may not do this.",
            404: "No such referral, or the caller may not see it or do this to it.",
            409: "The referral's status does not allow this now (stale or concurrent change).",
            422: "Some fields need attention; `errors` maps each field path to its message."}


def build_document(session_cookie: str) -> dict:
    paths = _paths()
    for item in paths.values():  # every call needs the session; every unsafe call the CSRF token too
        for method, operation in item.items():
            operation["security"] = [{"session": [], "csrf": []}] if method != "get" else [{"session": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Peace Portal API", "version": "1",
                 "description": "Consented, minimal-detail referrals between hospital programs, CVI teams and "
                                "service providers. Errors are RFC 9457 problem details."},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "parameters": {"referral_id": {"name": "referral_id", "in": "path", "required": True, "schema": UUID}},
            "responses": {str(status): {"description": text, "content": {"application/problem+json": {
                "schema": _ref("Problem")}}} for status, text in PROBLEMS.items()},
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": session_cookie,
                            "description": "The session cookie set by signing in at /login."},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRFToken",
                         "description": "The token from <meta name=\"csrf-token\"> of any signed-in page."},
            },
        },
    }
