"""Asking from Slack: `/veil`, the *Request unmask* shortcut, the modal's suggestions, its submission.

Slack gives 3 seconds, and a trigger ID that dies with them. So, inside the ack (database only):
the modal is opened for a person whose Slack account is linked; suggestions are served; a
submission is validated by the web form's own `UnmaskRequestForm` and `request_create` (which
asks Jira about the ticket when the project wants an open issue: JIRA_API_TIMEOUT_S at most), and
its errors are answered with `response_action: errors` (only the ack can do that). After the ack:
someone Veil does not know yet is worked out with Slack's help (the modal they got says "checking"
until then), `/veil status` is answered through the command's response URL, and the requester is
sent a DM with the link. Every ID the modal sends back is checked again against what the person
may request: options are a convenience, not a permission.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.utils import timezone
from slack_bolt import Ack
from slack_sdk.webhook import WebhookClient

from audit.models import Channel
from identity.models import User
from jitaccess.errors import NotAllowed, RequestError
from jitaccess.forms import CUSTOM, UnmaskRequestForm
from jitaccess.models import AccessRequest
from jitaccess.selectors.requests import requestable_databases, requests_in_progress
from jitaccess.selectors.scopes import columns_unmasked_for, duration_limit
from jitaccess.selectors.tickets import modal_ticket_hint
from jitaccess.services.requests import request_create
from jitaccess.slack.blocks import Block, notice_modal
from jitaccess.slack.client import slack_client
from jitaccess.slack.linking import UNLINKED_EXPLANATION, clicker
from jitaccess.slack.request_modal import (
    COLUMNS,
    DATABASE,
    DURATION,
    MAX_OPTIONS,
    PROJECT,
    REASON,
    TABLE,
    TICKET,
    WHOLE_DATABASE,
    ModalInput,
    column_options,
    database_options,
    dm_text,
    help_text,
    request_modal,
    sent_modal,
    status_text,
    table_options,
)
from jitaccess.slack.selectors import linked_user, request_link
from masking.models import Column, Database, Project, Table

logger = logging.getLogger(__name__)
KEPT_S = 10 * 60  # how long a modal still "checking who you are", or a sent one, is remembered
TITLE = "Request unmask"
STATUS, HELP, REQUEST = "status", "help", "request"


# --- /veil and the shortcut ------------------------------------------------------------------


def command_received(ack: Ack, body: dict[str, Any]) -> None:
    """`/veil [request]` opens the modal, `/veil help` answers at once, `/veil status` after the
    ack (it may need Slack to know who is asking); anything else is answered with the help."""
    word = _subcommand(body)
    if word in ("", REQUEST):
        ack()
        open_modal(str(body["user_id"]), str(body["trigger_id"]))
    elif word == STATUS:
        ack()
    elif word == HELP:
        ack(text=help_text(_new_request_url()), response_type="ephemeral")
    else:
        unknown = f"Veil does not know `/veil {word[:30]}`.\n"
        ack(text=unknown + help_text(_new_request_url()), response_type="ephemeral")


def command_after_ack(body: dict[str, Any]) -> None:
    word = _subcommand(body)
    if word in ("", REQUEST):
        finish_opening(str(body["user_id"]), str(body["trigger_id"]))
    elif word == STATUS:
        respond(body, status_for(str(body["user_id"])))


def shortcut_received(ack: Ack, body: dict[str, Any]) -> None:
    ack()
    open_modal(str(body["user"]["id"]), str(body["trigger_id"]))


def shortcut_after_ack(body: dict[str, Any]) -> None:
    finish_opening(str(body["user"]["id"]), str(body["trigger_id"]))


def open_modal(slack_user_id: str, trigger_id: str) -> None:
    """Inside the ack: the request modal for a linked person; for anyone else a modal saying Veil
    is checking, whose view ID is kept for `finish_opening` to replace."""
    user = linked_user(slack_user_id)
    view = modal_for(user) if user is not None else notice_modal(title=TITLE, text="Checking who you are…")
    opened = slack_client().views_open(trigger_id=trigger_id, view=view)
    if user is None:
        cache.set(_checking_key(slack_user_id, trigger_id), str(opened["view"]["id"]), KEPT_S)


def finish_opening(slack_user_id: str, trigger_id: str) -> None:
    """After the ack: link the person through their Slack profile's email if Veil can (as a click
    does), then show them the form, or why Veil cannot tell who they are."""
    view_id = cache.get(_checking_key(slack_user_id, trigger_id))
    if not view_id:
        return  # the person was linked: the form is open already
    user = clicker(slack_user_id, ())
    if user is None:
        view = notice_modal(
            title=TITLE,
            text=f"{UNLINKED_EXPLANATION} You can ask in Veil: <{_new_request_url()}|new request>.",
        )
    else:
        view = modal_for(user)
    try:
        slack_client().views_update(view_id=str(view_id), view=view)
    except Exception:
        logger.warning("could not update the request modal of %s", slack_user_id, exc_info=True)


def modal_for(user: User) -> Block:
    projects = list(
        Project.objects.filter(pk__in=requestable_databases(user).values("project")).order_by("key")
    )
    if not projects:
        return notice_modal(
            title=TITLE,
            text="You may not ask for unmask in any project that has a database in Veil's catalog. "
            "A project administrator can let you (the request_unmask permission).",
        )
    return request_modal(projects, ticket_hint=modal_ticket_hint(projects))


def status_for(slack_user_id: str) -> str:
    user = clicker(slack_user_id, ())
    if user is None:
        return (
            f"{UNLINKED_EXPLANATION} Your requests are in Veil: <{settings.SITE_URL}/requests/|my requests>."
        )
    pending, live = requests_in_progress(user)
    return status_text(
        pending, live, link=request_link, new_request_url=_new_request_url(), now=timezone.now()
    )


def respond(body: dict[str, Any], text: str) -> None:
    """A private answer through the command's response URL (Slack's, or the configured API
    host's in tests): a signed payload could still name any URL, and Veil posts only to Slack."""
    url = str(body.get("response_url") or "")
    host = urlsplit(url).netloc
    if host not in ("hooks.slack.com", urlsplit(settings.SLACK_API_URL).netloc):
        logger.warning("response URL on an unexpected host %r; not answered", host[:100])
        return
    try:
        WebhookClient(url, timeout=settings.SLACK_API_TIMEOUT_S).send(text=text, response_type="ephemeral")
    except Exception:
        logger.warning("could not answer /veil status", exc_info=True)


# --- suggestions ---------------------------------------------------------------------------------


def suggest(ack: Ack, body: dict[str, Any]) -> None:
    """Options for the database, table and columns selects, as the person types: only what lies
    in projects where they may request, narrowed by what the modal already has chosen."""
    user = linked_user(str(body["user"]["id"]))
    if user is None:
        ack(options=[])
        return
    chosen = ModalInput.from_view(body.get("view"))
    ack(options=suggestions(user, str(body.get("action_id")), str(body.get("value") or ""), chosen))


def suggestions(user: User, action_id: str, typed: str, chosen: ModalInput) -> list[Block]:
    typed = typed.strip().lower()
    databases = requestable_databases(user)
    if chosen.project:
        databases = databases.filter(project__key=chosen.project)
    if action_id == DATABASE:
        if typed:
            databases = databases.filter(Q(name__icontains=typed) | Q(instance__key__icontains=typed))
        return database_options(databases[:MAX_OPTIONS])
    database = databases.filter(pk=chosen.database).first() if chosen.database.isdigit() else None
    among: QuerySet[Database] | list[Database] = [database] if database is not None else databases
    if action_id == TABLE:
        tables = (
            Table.objects.filter(schema__database__in=among, columns__discovered_by_decision=False)
            .filter(_named(typed, "schema__name", "name"))
            .select_related("schema__database__instance")
            .order_by("schema__database__instance__key", "schema__database__name", "schema__name", "name")
            .distinct()
        )
        whole = database if database is not None and (not typed or typed in "whole database") else None
        return table_options(tables[: MAX_OPTIONS - 1], whole=whole, qualified=database is None)
    if action_id != COLUMNS:
        return []
    columns = Column.objects.filter(table__schema__database__in=among, discovered_by_decision=False)
    if chosen.table.startswith("table:") and chosen.table[6:].isdigit():
        columns = columns.filter(table_id=int(chosen.table[6:]))
    found = list(
        columns.filter(_named(typed, "table__name", "name"))
        .select_related("table__schema__database__instance")
        .order_by(
            "table__schema__database__instance__key",
            "table__schema__database__name",
            "table__schema__name",
            "table__name",
            "position",
            "name",
        )[:MAX_OPTIONS]
    )
    visible: set[int] = set()
    by_database: dict[Database, list[Column]] = {}
    for column in found:
        by_database.setdefault(column.table.schema.database, []).append(column)
    for each, its_columns in by_database.items():
        visible |= columns_unmasked_for(user, each, its_columns)
    return column_options(found, visible, qualified=database is None)


def _named(typed: str, parent: str, name: str) -> Q:
    """`typed` found in the name or its parent's (a table's schema, a column's table); "a.b" reads
    as the parent then the name."""
    if not typed:
        return Q()
    if "." in typed:
        left, right = typed.rsplit(".", 1)
        return Q(**{f"{parent}__icontains": left, f"{name}__icontains": right})
    return Q(**{f"{name}__icontains": typed}) | Q(**{f"{parent}__icontains": typed})


# --- submission ----------------------------------------------------------------------------------


@dataclass
class Submitted:
    request: AccessRequest | None = None
    errors: dict[str, str] = field(default_factory=dict)


def request_submitted(ack: Ack, body: dict[str, Any]) -> None:
    """Inside the ack, since only its answer can put errors next to the fields."""
    outcome = submit(str(body["user"]["id"]), body["view"])
    if outcome.request is None:
        ack(response_action="errors", errors=outcome.errors)
    else:
        ack(response_action="update", view=sent_modal(outcome.request, request_link(outcome.request.pk)))


def submit(slack_user_id: str, view: dict[str, Any]) -> Submitted:
    """Validate the modal as the web form does and create the request; errors keyed by block."""
    sent_key = f"slack:request-modal:{view.get('id', '')}"
    if (already := cache.get(sent_key)) and (done := AccessRequest.objects.filter(pk=already).first()):
        return Submitted(done)  # the same modal submitted twice: one request
    user = linked_user(slack_user_id)
    if user is None:
        return Submitted(errors={PROJECT: UNLINKED_EXPLANATION})
    given = ModalInput.from_view(view)
    database = (
        requestable_databases(user).filter(pk=int(given.database)).first()
        if given.database.isdigit()
        else None
    )
    if database is None:
        return Submitted(errors={DATABASE: "Choose a database from the list."})
    if given.project and database.project.key != given.project:
        return Submitted(
            errors={
                DATABASE: f"{database.instance.key}/{database.name} is not in {given.project}: choose again."
            }
        )
    scope, refusal = _scope_values(database, given)
    if refusal:
        return Submitted(errors=refusal)
    form = UnmaskRequestForm(
        {
            "scope": scope,
            "duration": CUSTOM,
            "custom_hours": given.duration_hours,
            "reason": given.reason,
            "ticket": given.ticket,
        },
        database=database,
        limit=duration_limit(requester=user, database=database),
    )
    if form.is_valid():
        try:
            request = request_create(
                requester=user,
                scope=form.cleaned_data["scope"],
                duration=form.cleaned_data["duration"],
                reason=form.cleaned_data["reason"],
                ticket=form.cleaned_data["ticket"],
                channel=Channel.SLACK,
            )
        except RequestError as error:
            form.add_service_error(error)
        except NotAllowed as error:
            return Submitted(errors={PROJECT: str(error)})
        else:
            try:
                cache.set(sent_key, request.pk, KEPT_S)
            except Exception:
                logger.warning("cache unavailable: %s gets no DM from Slack", request.ref, exc_info=True)
            return Submitted(request)
    scope_block = COLUMNS if given.columns else TABLE
    blocks = {"scope": scope_block, "duration": DURATION, "custom_hours": DURATION, "reason": REASON}
    blocks |= {"ticket": TICKET, "__all__": scope_block}
    errors: dict[str, str] = {}
    for name, messages in form.errors.items():
        block = blocks.get(name, scope_block)
        errors[block] = " ".join(filter(None, [errors.get(block, ""), *messages]))
    return Submitted(errors=errors)


def _scope_values(database: Database, given: ModalInput) -> tuple[list[str], dict[str, str]]:
    """The web form's scope values for what the modal chose, or the error per block. IDs from
    another database, or no longer catalogued, are refused here, in words a modal can show."""
    where = f"{database.instance.key}/{database.name}"
    columns = Column.objects.filter(table__schema__database=database, discovered_by_decision=False)
    if given.table == WHOLE_DATABASE:
        table = None
    elif given.table.startswith("table:") and given.table[6:].isdigit():
        table = Table.objects.filter(pk=int(given.table[6:]), schema__database=database).first()
        if table is None:
            return [], {TABLE: f"Not a table of {where}: choose one from the list."}
    else:
        return [], {TABLE: "Choose a table (or the whole database) from the list."}
    if not given.columns:
        return ([f"table:{table.pk}"] if table else [WHOLE_DATABASE]), {}
    ids = [int(v[7:]) for v in given.columns if v.startswith("column:") and v[7:].isdigit()]
    found = list(columns.filter(pk__in=ids).select_related("table__schema"))
    if len(found) != len(given.columns):
        unknown = len(given.columns) - len(found)
        return [], {
            COLUMNS: f"{unknown} of the columns chosen are not columns of {where}: choose from the list."
        }
    if table is not None and any(c.table_id != table.pk for c in found):
        return [], {COLUMNS: f"Choose columns of {table.schema.name}.{table.name} only, or change the table."}
    return [f"column:{c.pk}" for c in found], {}


def dm_requester(body: dict[str, Any]) -> None:
    """After the ack: the requester's DM with the link (best effort: the modal showed it too)."""
    pk = cache.get(f"slack:request-modal:{body['view'].get('id', '')}")
    request = AccessRequest.objects.select_related("database__instance").filter(pk=pk).first() if pk else None
    if request is None:
        return
    try:
        slack_client().chat_postMessage(
            channel=str(body["user"]["id"]),
            text=dm_text(request, request_link(request.pk)),
            unfurl_links=False,
        )
    except Exception:
        logger.warning("could not DM %s its link", request.ref, exc_info=True)


def _subcommand(body: dict[str, Any]) -> str:
    words = str(body.get("text") or "").split()
    return words[0].lower() if words else ""


def _checking_key(slack_user_id: str, trigger_id: str) -> str:
    return f"slack:checking-modal:{slack_user_id}:{trigger_id}"


def _new_request_url() -> str:
    return f"{settings.SITE_URL}/requests/new/"
