"""The error contract between services and their callers."""


class ServiceError(Exception):
    """A rule refused the request. `message` is safe to show; `field` names the form field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
