"""The two refusals jitaccess's services and selectors raise; pages, the API and Slack turn each
into a message for the person (a field error, or a 403)."""

from __future__ import annotations


class RequestError(ValueError):
    """A request refused before anything was written; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotAllowed(PermissionError):
    """The person may not do this to this request (the message says why, for them to read)."""
