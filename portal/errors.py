"""The error contract between services and their callers."""


class ServiceError(Exception):
    """A rule refused the request. `message` is safe to show; `field` names the form field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationFailed(ServiceError):
    """Several fields are wrong at once; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Some fields need attention.", next(iter(errors), None))
        self.errors = errors


class ConflictError(ServiceError):
    """The record changed underneath the request (a stale or concurrent transition): HTTP 409."""
