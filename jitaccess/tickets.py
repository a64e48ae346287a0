"""What a ticket looks like: a link, an issue key, or whatever a project's pattern says.

A project may give a pattern every ticket must match, and a hint saying it in words (as
jit-access's justification pattern and hint). Patterns are matched in linear time by the regular
expression engine behind `common-expression-language` (Rust's `regex`, RE2 syntax: no
look-around, no back-references), so no pattern an administrator saves can hang a request on a
long ticket, as a backtracking engine could. The whole ticket must match.
"""

from __future__ import annotations

import cel
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from jitaccess.jira import ISSUE_KEY

TICKET_MAX_CHARS = 200
PATTERN_MAX_CHARS = 500
HINT_MAX_CHARS = 200
DEFAULT_HINT = "a link to the ticket, or its issue key such as OPS-123"
_LINK = URLValidator(schemes=["http", "https"])


def pattern_problem(pattern: str) -> str:
    """Why `pattern` cannot be a ticket pattern; "" when it can."""
    if len(pattern) > PATTERN_MAX_CHARS:
        return f"is longer than {PATTERN_MAX_CHARS} characters"
    try:
        pattern_matches(pattern, "")
    except RuntimeError as exc:
        return f"is not a regular expression Veil can use ({_engine_error(str(exc))})"
    return ""


def pattern_matches(pattern: str, ticket: str) -> bool:
    """Whether the whole of `ticket` matches `pattern` (RuntimeError for a pattern that is not one)."""
    return bool(cel.evaluate("ticket.matches(pattern)", {"ticket": ticket, "pattern": f"^(?:{pattern})$"}))


def _engine_error(text: str) -> str:
    """The regex engine's own words, without CEL's wrapping (which would show the anchors Veil adds)."""
    text = " ".join(text.split()).removesuffix("Check function arguments and their types.").strip()
    for marker in ("not a valid regex: ", "error: "):
        text = text.rsplit(marker, 1)[-1]
    return text.rstrip(". ")[:200]


def validate_ticket_pattern(pattern: str) -> None:
    """The model field's validator, so the admin site refuses what the settings page refuses."""
    if pattern and (problem := pattern_problem(pattern)):
        raise ValidationError(f"The pattern {problem}.")


def is_link(ticket: str) -> bool:
    try:
        _LINK(ticket)
    except ValidationError:
        return False
    return True


def is_issue_key(ticket: str) -> bool:
    return bool(ISSUE_KEY.fullmatch(ticket))
