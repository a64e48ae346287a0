"""Block Kit for asking from Slack: the request modal, its suggestions, `/veil status` and help.

Pure: model objects in, dicts and text out. What the modal's fields hold is read back by
`ModalInput.from_view`, the one place that knows the modal's block and action IDs. Catalog names
are escaped like everything typed: a table may be called `<!channel>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jitaccess.forms import DURATION_PRESETS
from jitaccess.models import AccessRequest
from jitaccess.slack.blocks import Block, escape, notice_modal, section, when
from jitaccess.tickets import TICKET_MAX_CHARS
from masking.models import Column, Database, Project, Table

REQUEST_MODAL = "request_modal"
SHORTCUT = "request_unmask"  # the global shortcut's callback ID (slack-app-manifest.yml)
COMMAND = "/veil"
PROJECT, DATABASE, TABLE, COLUMNS, DURATION, REASON, TICKET = (
    "project",
    "database",
    "table",
    "columns",
    "duration",
    "reason",
    "ticket",
)
SUGGESTED = (DATABASE, TABLE, COLUMNS)  # the external selects Veil serves options for
WHOLE_DATABASE = "database"  # the table option that asks for every table (the web form's value)
MAX_OPTIONS = 100  # Block Kit: options of one select
OPTION_TEXT = 75  # Block Kit: characters of an option's text
VISIBLE_MARK = " (in clear for you)"
REASON_MAX = 2000  # as the web form
HINT_MAX = 2000  # Block Kit: the text of an input's hint


@dataclass(frozen=True)
class ModalInput:
    """What a submitted (or partly filled) request modal holds; "" or () where nothing is chosen."""

    project: str = ""
    database: str = ""
    table: str = ""
    columns: tuple[str, ...] = ()
    duration_hours: str = ""
    reason: str = ""
    ticket: str = ""

    @classmethod
    def from_view(cls, view: dict[str, Any] | None) -> ModalInput:
        values: dict[str, Any] = ((view or {}).get("state") or {}).get("values") or {}

        def element(block: str) -> dict[str, Any]:
            found = (values.get(block) or {}).get(block)
            return found if isinstance(found, dict) else {}

        def chosen(block: str) -> str:
            return str((element(block).get("selected_option") or {}).get("value") or "")

        return cls(
            project=chosen(PROJECT),
            database=chosen(DATABASE),
            table=chosen(TABLE),
            columns=tuple(str(o.get("value") or "") for o in element(COLUMNS).get("selected_options") or ()),
            duration_hours=chosen(DURATION),
            reason=str(element(REASON).get("value") or "").strip(),
            ticket=str(element(TICKET).get("value") or "").strip(),
        )


def request_modal(projects: Sequence[Project], *, ticket_hint: str = "") -> Block:
    """The form: project, database, table, columns (suggested as the person types), duration,
    reason, ticket (`ticket_hint` says what the projects accept). The selects' options are catalog
    IDs, checked again on submission."""
    project_element: Block = {
        "type": "static_select",
        "action_id": PROJECT,
        "placeholder": _plain("Choose a project"),
        "options": [option(p.key, f"{p.title} ({p.key})") for p in projects[:MAX_OPTIONS]],
    }
    if len(projects) == 1:
        project_element["initial_option"] = project_element["options"][0]
    return {
        "type": "modal",
        "callback_id": REQUEST_MODAL,
        "title": _plain("Request unmask"),
        "submit": _plain("Send request"),
        "close": _plain("Cancel"),
        "blocks": [
            section("Ask to see masked values for a while. Approvers read what you write here."),
            _input(PROJECT, "Project", project_element),
            _input(DATABASE, "Database", _external(DATABASE, "Type to search")),
            _input(
                TABLE,
                "Table",
                _external(TABLE, "Type a table's name"),
                hint="Or the whole database (first in the list).",
            ),
            _input(
                COLUMNS,
                "Columns",
                _external(COLUMNS, "Type a column's name", multi=True),
                optional=True,
                hint=f"Leave empty for the whole table. Columns marked{VISIBLE_MARK} you already see.",
            ),
            _input(
                DURATION,
                "For how long",
                {
                    "type": "static_select",
                    "action_id": DURATION,
                    "options": [option(hours, label) for hours, label in DURATION_PRESETS],
                    "initial_option": option(*DURATION_PRESETS[0]),
                },
            ),
            _input(
                REASON,
                "Reason",
                {
                    "type": "plain_text_input",
                    "action_id": REASON,
                    "multiline": True,
                    "max_length": REASON_MAX,
                },
                hint="Say why you need to see these values; approvers and auditors read this.",
            ),
            _input(
                TICKET,
                "Ticket",
                {"type": "plain_text_input", "action_id": TICKET, "max_length": TICKET_MAX_CHARS},
                optional=True,
                hint=ticket_hint[:HINT_MAX],
            ),
        ],
    }


def database_options(databases: Iterable[Database]) -> list[Block]:
    return [option(str(d.pk), f"{d.instance.key}/{d.name} ({d.project.key})") for d in databases]


def table_options(tables: Iterable[Table], *, whole: Database | None, qualified: bool) -> list[Block]:
    """`whole`: the database a "whole database" option stands for, first; `qualified`: name each
    table's database (nothing is chosen yet, so tables of several databases are listed)."""
    options = [option(WHOLE_DATABASE, f"Whole database {whole.instance.key}/{whole.name}")] if whole else []
    for table in tables:
        database = table.schema.database
        prefix = f"{database.instance.key}/{database.name}/" if qualified else ""
        options.append(option(f"table:{table.pk}", f"{prefix}{_table_label(table)}"))
    return options


def column_options(columns: Iterable[Column], visible: set[int], *, qualified: bool) -> list[Block]:
    options = []
    for column in columns:
        database = column.table.schema.database
        prefix = f"{database.instance.key}/{database.name}/" if qualified else ""
        mark = VISIBLE_MARK if column.pk in visible else ""
        label = f"{prefix}{_table_label(column.table)}.{column.name}"
        options.append(option(f"column:{column.pk}", _fit(label, OPTION_TEXT - len(mark)) + mark))
    return options


def option(value: str, text: str) -> Block:
    return {"text": _plain(_fit(text, OPTION_TEXT)), "value": value}


def sent_modal(request: AccessRequest, link: str) -> Block:
    """What the modal turns into once the request is filed."""
    if request.state == "approved" and request.expires_at:
        status = f"was approved by policy: access until {when(request.expires_at)}"
    else:
        status = "is waiting for approval; you will get a DM when it is decided"
    text = (
        f":inbox_tray: <{link}|{request.ref}> {status}.\n"
        f"{escape(request.scope_label)}, for {escape(request.policy_title)}."
    )
    return notice_modal(title="Request sent", text=text)


def dm_text(request: AccessRequest, link: str) -> str:
    """The requester's DM after asking from Slack: what they asked, and the link to follow it."""
    if request.state == "approved" and request.expires_at:
        status = f"was approved by policy: access until {when(request.expires_at)}"
    else:
        status = (
            f"is waiting for approval ({request.approvals_required} needed under "
            f"{escape(request.policy_title)})"
        )
    return (
        f":inbox_tray: You asked to unmask {escape(request.scope_label)}: "
        f"<{link}|{request.ref}> {status}. Follow it, or cancel it, in Veil."
    )


def status_text(
    pending: Sequence[AccessRequest],
    live: Sequence[AccessRequest],
    *,
    link: Callable[[int], str],
    new_request_url: str,
    now: datetime,
) -> str:
    """`/veil status`: the person's pending requests and live grants. `link(pk)` is a request's URL."""
    if not pending and not live:
        return (
            "You have no pending requests and no live grants. "
            f"Type `/veil` to ask for access, or ask in Veil: <{new_request_url}|new request>."
        )
    lines = []
    if pending:
        lines.append(f"*Pending requests* ({len(pending)})")
        lines += [
            f"• <{link(r.pk)}|{r.ref}> {escape(r.scope_label)}, asked {when(r.created_at)}: "
            f"{escape(r.stage_label) + ', ' if r.stages else ''}"
            f"{len(r.stage_approvals)} of {r.approvals_required} approval(s)"
            for r in pending
        ]
    if live:
        lines.append(f"*Live grants* ({len(live)})")
        for grant in live:
            starts = f"from {when(grant.starts_at)} " if grant.starts_at and grant.starts_at > now else ""
            until = when(grant.expires_at) if grant.expires_at else "?"
            lines.append(
                f"• <{link(grant.pk)}|{grant.ref}> {escape(grant.scope_label)}, {starts}until {until}"
            )
    return "\n".join(lines)


def help_text(new_request_url: str) -> str:
    return (
        "*Veil in Slack*\n"
        "• `/veil` (or the *Request unmask* shortcut) opens a form: project, database, table, "
        "columns, how long and why. Approvers are asked as for a request made in Veil, and you "
        "get a DM with its link.\n"
        "• `/veil status` lists your pending requests and live grants.\n"
        "• `/veil help` shows this.\n"
        "Approvers approve or deny from the messages Veil posts. Your Slack account must be linked "
        "to your Veil account: it is when your Slack email is your verified Veil email, or an "
        "administrator links them. Anything else (cancel, extend, give up a grant) is in Veil: "
        f"<{new_request_url}|new request>."
    )


def _input(block_id: str, label: str, element: Block, *, optional: bool = False, hint: str = "") -> Block:
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = _plain(hint)
    return block


def _external(action_id: str, placeholder: str, *, multi: bool = False) -> Block:
    return {
        "type": "multi_external_select" if multi else "external_select",
        "action_id": action_id,
        "placeholder": _plain(placeholder),
        "min_query_length": 0,
    }


def _plain(text: str) -> Block:
    return {"type": "plain_text", "text": text}


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table_label(table: Table) -> str:
    return f"{table.schema.name}.{table.name}" if table.schema.name else table.name
