"""Whether the ticket a request names is one its project accepts, and what Jira says of it.

`request_create` asks `ticket_format` before anything else costly, and `ticket_checked` last,
before its transaction (so no lock waits on Jira). Refusals are `RequestError`s on `ticket`, which
the page, the API and the Slack modal show next to the ticket field.

Jira is asked only for a project whose settings say the ticket must be an open Jira issue, once,
when the request is made; the title and status it gave are kept on the request for approvers.
Jira failing to answer refuses the ticket: one that cannot be checked is not known to be open.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from jitaccess.errors import RequestError
from jitaccess.jira import JiraUnavailable, issue_link, jira_configured, jira_issue, key_in_link
from jitaccess.models import ProjectAccessSettings
from jitaccess.tickets import DEFAULT_HINT, TICKET_MAX_CHARS, is_issue_key, is_link, pattern_matches
from masking.models import Project

logger = logging.getLogger(__name__)
FIELD = "ticket"


@dataclass(frozen=True)
class Ticket:
    """A request's ticket as Veil keeps it: what was given, the page to open (when known), and
    what Jira said of it (when Veil asked)."""

    given: str = ""
    url: str = ""
    key: str = ""  # the Jira issue key it names, when it names one
    title: str = ""
    status: str = ""


def ticket_hint(rules: ProjectAccessSettings) -> str:
    """What a ticket of the project looks like, in words, for the field's help and the refusals."""
    return rules.ticket_hint.strip() or (
        "a Jira issue key such as OPS-123, or its link" if rules.ticket_in_jira else DEFAULT_HINT
    )


def modal_ticket_hint(projects: Sequence[Project]) -> str:
    """What the Slack modal says under its ticket field, before the person picks a project: the
    project's own words when there is one project, else which projects require a ticket."""
    rules = {r.project_id: r for r in ProjectAccessSettings.objects.filter(project__in=projects)}
    if len(projects) == 1:
        only = rules.get(projects[0].pk) or ProjectAccessSettings(project=projects[0])
        return ticket_field_help(only)
    required = [p.key for p in projects if p.pk in rules and rules[p.pk].ticket_required]
    where = f" Required in {', '.join(required)}." if required else ""
    return f"{DEFAULT_HINT[:1].upper()}{DEFAULT_HINT[1:]}.{where}"


def ticket_field_help(rules: ProjectAccessSettings) -> str:
    """The ticket field's help on the request form and in the modal."""
    checked = " Veil checks in Jira that it is open." if rules.ticket_in_jira else ""
    return f"{'Required' if rules.ticket_required else 'Optional'}: {ticket_hint(rules)}.{checked}"


def ticket_format(rules: ProjectAccessSettings, given: str) -> Ticket:
    """The ticket, if its project's rules accept its form (required, pattern, a link or a key);
    RequestError on `ticket` naming what is wrong and what a ticket looks like there."""
    given = given.strip()
    if not given:
        if rules.ticket_required:
            raise RequestError(FIELD, f"is required in project {rules.project.key} ({ticket_hint(rules)})")
        return Ticket()
    if len(given) > TICKET_MAX_CHARS:
        raise RequestError(FIELD, f"is longer than {TICKET_MAX_CHARS} characters")
    if is_issue_key(given.upper()):
        given = given.upper()  # Jira's keys are upper case; ops-123 is OPS-123
    if rules.ticket_pattern:
        try:
            matched = pattern_matches(rules.ticket_pattern, given)
        except RuntimeError:
            logger.warning("project %s has a ticket pattern Veil cannot use", rules.project.key)
            matched = False
        if not matched:
            raise RequestError(
                FIELD, f"{given!r} is not a ticket of project {rules.project.key} ({ticket_hint(rules)})"
            )
    elif not (is_link(given) or is_issue_key(given)):
        raise RequestError(FIELD, f"{given!r} is neither a link (https://…) nor an issue key such as OPS-123")
    key = given if is_issue_key(given) else key_in_link(given)
    if is_link(given):
        return Ticket(given, given, key)
    return Ticket(given, issue_link(key) if key and jira_configured() else "", key)


def ticket_checked(rules: ProjectAccessSettings, ticket: Ticket) -> Ticket:
    """`ticket` (from `ticket_format`) with Jira's title and status when the project's tickets
    must be open Jira issues; RequestError on `ticket` when it is not one, or Jira cannot say."""
    if not ticket.given or not rules.ticket_in_jira:
        return ticket
    project = rules.project.key
    if not jira_configured():
        raise RequestError(
            FIELD,
            f"project {project} needs an open Jira issue, but Veil has no Jira connection "
            "(JIRA_URL, JIRA_EMAIL, JIRA_API_TOKEN): ask an administrator",
        )
    if not ticket.key:
        raise RequestError(FIELD, f"project {project} needs a Jira issue ({ticket_hint(rules)})")
    try:
        issue = jira_issue(ticket.key)
    except JiraUnavailable as exc:
        logger.warning("Jira could not say what %s is, so the ticket is refused: %s", ticket.key, exc)
        raise RequestError(
            FIELD,
            f"Veil could not check {ticket.key} in Jira ({exc}), and a ticket it cannot check is not "
            "taken as open: try again in a moment",
        ) from exc
    if issue is None:
        raise RequestError(
            FIELD, f"{ticket.key} is not an issue in Jira (or Veil may not see it): check the key"
        )
    if issue.done:
        raise RequestError(FIELD, f"{issue.key} is closed in Jira ({issue.status}): name an open issue")
    return replace(
        ticket, url=issue_link(issue.key), key=issue.key, title=issue.title[:255], status=issue.status[:100]
    )
