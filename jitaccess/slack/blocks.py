"""Block Kit for requests: the approval message, the requester's notices, the deny modal.

Pure: a `Card` in, dicts out. Every text a person typed (reason, ticket, names) is escaped, so a
reason cannot say `<!channel>` or fake a link. Times are Slack date tokens, shown in each reader's
own time zone, with a UTC fallback.

Slack refuses a whole message when one part is over Block Kit's limits (3,000 characters in a
section or context element, 300 in a confirm dialog), and counts them escaped. So typed text is
cut to a budget after escaping (`clip`, `cut`; never inside an `&amp;`), a cut ends with "…", and a long
column list says how many it leaves out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jitaccess.formatting import directory_ending
from jitaccess.models import NotificationKind
from jitaccess.slack.selectors import Card, level_label
from jitaccess.states import State

Block = dict[str, Any]
APPROVE, APPROVE_IN_WEB, DENY, OPEN_IN_WEB, EXTEND = (
    "approve",
    "approve_in_web",
    "deny",
    "open_in_web",
    "extend",
)
DENY_MODAL = "deny_modal"
REASON_LIMIT = 1500  # characters of a typed reason shown inside a longer line, as Slack counts them
SECTION_LIMIT = 3000  # Block Kit: the text of a section or of a context element
CONFIRM_TEXT_LIMIT = 300  # Block Kit: the text of a confirm dialog
NAMED_COLUMNS_LIMIT = 5  # a scope names its columns up to this many, else counts them
TICKET_LIMIT = 300  # characters of each part of the ticket line (given, Jira title, status), escaped
NOTHING_CHANGED = "Nothing changed."  # how every refused or stale click's reply ends


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only &, < and > are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """`text` escaped, and cut to at most `limit` characters ending with "…" if longer."""
    return cut(escape(text), limit)


def cut(escaped: str, limit: int) -> str:
    """Cut already-escaped text to `limit` characters, never inside an entity such as `&amp;`."""
    if len(escaped) <= limit:
        return escaped
    kept = escaped[: limit - 1]
    entity = kept.rfind("&")
    if entity >= 0 and ";" not in kept[entity:]:
        kept = kept[:entity]
    return kept + "…"


def when(moment: datetime, *, seconds: bool = False) -> str:
    """A moment Slack shows in each reader's time zone; `seconds` where the exact second is evidence."""
    fallback = moment.astimezone(UTC).strftime(f"%Y-%m-%d %H:%M{':%S' if seconds else ''} UTC")
    time = "{time_secs}" if seconds else "{time}"
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {time}|{fallback}>"


def duration_text(duration: timedelta) -> str:
    minutes = int(duration.total_seconds() // 60)
    for size, unit in ((24 * 60, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0 and minutes >= size:
            count = minutes // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{minutes} minutes"


def scope_text(card: Card) -> str:
    scope = f"{card.instance}/{card.database}"
    if card.table:
        scope += f"/{card.table}"
    if not card.all_columns:
        count = max(card.column_count, len(card.columns))
        if count <= NAMED_COLUMNS_LIMIT:
            scope += f" ({', '.join(c.name for c in card.columns)})"
        else:
            scope += f" ({count} columns)"
    return escape(scope)


def asks_text(card: Card) -> str:
    """What the request asks for, after the requester's name: unmasking, or more time on a grant."""
    if card.extends:
        ends = f", which ends {when(card.extends_until)}" if card.extends_until else ""
        return f"asks for more time on {scope_text(card)}: extending {card.extends}{ends}"
    return f"asks to unmask {scope_text(card)}"


def status_text(card: Card) -> str:
    """One line saying where the request stands, who decided, when, and until when."""
    approvers = escape(", ".join(card.approvers))
    ended_by = escape(card.ended_by)
    if card.state == State.PENDING:
        line = f":hourglass_flowing_sand: Waiting for {waiting_for(card)}: {approval_count(card)}"
        if card.approvers:
            line += f" ({approvers})"
        if card.web_confirm:
            line += f". {_web_confirm_reason(card)}: approve in Veil after signing in"
        return f"{line}. Closes {when(card.pending_until)} if nobody decides."
    decided = when(card.decided_at) if card.decided_at else "?"
    if card.state == State.APPROVED and card.expires_at:
        who = f"by {approvers}" if card.approvers else "automatically"
        return f":white_check_mark: Approved {who} at {decided}; access until {when(card.expires_at)}."
    if card.state == State.DENIED:
        return f":no_entry: Denied by {ended_by} at {decided}: {clip(card.deny_reason, REASON_LIMIT)}"
    ended = when(card.ended_at) if card.ended_at else "?"
    why = f" ({clip(card.end_reason, REASON_LIMIT)})" if card.end_reason else ""
    endings = {
        # ended_at is the grant's expires_at, however late the sweep recorded it.
        State.EXPIRED: f":lock: Expired {when(card.ended_at, seconds=True) if card.ended_at else '?'}; "
        "values are masked again.",
        State.REVOKED: f":lock: Revoked by {ended_by} at {ended}{why}; values are masked again.",
        State.RELINQUISHED: f":lock: Given up by {ended_by} at {ended}; values are masked again.",
        State.CANCELLED: f":heavy_multiplication_x: Cancelled by {ended_by} at {ended}.",
        State.TIMED_OUT: f":zzz: Timed out: nobody decided by {ended}. The request is closed.",
    }
    if card.deactivated:  # nobody revoked or cancelled it: the directory deactivated the requester
        because = f"Ended at {ended}: {escape(directory_ending(card.deactivated))}"
        endings[State.REVOKED] = f":lock: {because}; values are masked again."
        endings[State.CANCELLED] = f":heavy_multiplication_x: {because}."
    line = endings.get(State(card.state), f"{State(card.state).label}.")
    if card.approvers and card.state in (State.EXPIRED, State.REVOKED, State.RELINQUISHED):
        line = f"Approved by {approvers}. {line}"
    return line


def approval_count(card: Card) -> str:
    """ "1 of 2 approvals": how far the request (or the stage waiting) is towards its quorum."""
    return f"{len(card.stage_approvers)} of {_approvals_required(card)}"


def progress_text(card: Card) -> str:
    """ "1 of 2 approvals", or with stages "stage 2 of 2 (Security) has 0 of 1 approval"."""
    return f"{stage_text(card)} has {approval_count(card)}" if card.stages else approval_count(card)


def waiting_for(card: Card) -> str:
    """What a pending request waits for: "approval", or "approval at stage 2 of 2 (Security)"."""
    return f"approval at {stage_text(card)}" if card.stages else "approval"


def stage_text(card: Card) -> str:
    """ "stage 2 of 2 (Security)": the stage waiting (or that decided); stage names are typed, so escaped."""
    return f"stage {card.stage} of {len(card.stages)} ({escape(card.stages[card.stage - 1])})"


def stage_opened_text(card: Card, mentions: list[str]) -> str:
    """The thread reply that asks a later stage's approvers, once the stage before is complete.
    `mentions` are Slack user IDs (from Veil's links, not typed), so they are not escaped."""
    before = f"stage {card.stage - 1} ({escape(card.stages[card.stage - 2])})"
    asked = f" {' '.join(f'<@{m}>' for m in mentions)}:" if mentions else ""
    return (
        f":arrow_forward: {card.ref}: {before} is complete, so {stage_text(card)} decides now.{asked} "
        f"{_approvals_required(card)} needed."
    )


def _approvals_required(card: Card) -> str:
    return f"{card.approvals_required} approval{'s' if card.approvals_required != 1 else ''}"


def request_message(card: Card, *, banner: str = "") -> tuple[str, list[Block]]:
    """The approval message: fallback text and blocks. Buttons only while the request is pending;
    above the web-confirmation level Approve is a link to the request in Veil."""
    for_agent = f" for agent `{escape(card.service_account)}`" if card.service_account else ""
    mention = f" (<@{card.requester_slack_id}>)" if card.requester_slack_id else ""
    heading = "Extension request" if card.extends else "Unmask request"
    asks = (
        f"asks for {duration_text(card.duration)} more on {card.extends}"
        if card.extends
        else "asks to see unmasked values"
    )
    blocks: list[Block] = []
    if banner:
        blocks.append(section(banner))
    blocks += [
        {"type": "header", "text": {"type": "plain_text", "text": f"{heading} {card.ref}"[:150]}},
        section(f"*{escape(card.requester)}*{mention} {asks}{for_agent}"),
        {
            "type": "section",
            "fields": [
                mrkdwn(f"*Instance*\n{escape(card.instance)} ({escape(card.environment)})"),
                mrkdwn(f"*Database*\n{escape(card.database)}"),
                mrkdwn(f"*Table*\n{escape(card.table) or 'every table'}"),
                mrkdwn(f"*Duration*\n{duration_text(card.duration)}"),
                mrkdwn(f"*Policy*\n{escape(card.policy_title)} · {_policy_needs(card)}"),
            ],
        },
        section(f"*Columns*\n{_columns_text(card)}"),
        section(
            cut(
                "*Reason*\n" + "\n".join(f">{line}" for line in escape(card.reason).splitlines()),
                SECTION_LIMIT,
            )
        ),
        section(f"*Ticket*\n{ticket_text(card)}"),
        *_oncall_context(card),
        {
            "type": "context",
            "elements": [mrkdwn(f"{status_text(card)}  <{link_target(card.link)}|Open {card.ref} in Veil>")],
        },
    ]
    if card.state == State.PENDING:
        blocks.append({"type": "actions", "block_id": f"request:{card.pk}", "elements": _buttons(card)})
    text = f"{card.ref}: {escape(card.requester)} {asks_text(card)}. {status_text(card)}"
    return text, blocks


def ticket_text(card: Card) -> str:
    """The ticket as approvers read it under the reason: its link (or what was given), then, when
    Veil checked it in Jira, the issue's title and status as they were when the request was made.
    Typed or written in Jira, every part is escaped and cut to its budget."""
    given = card.ticket or card.ticket_url
    if not given:
        return "none"
    text = (
        f"<{link_target(card.ticket_url)}|{clip(given, TICKET_LIMIT)}>"
        if card.ticket_url
        else clip(given, TICKET_LIMIT)
    )
    if card.ticket_title:
        text += f" · {clip(card.ticket_title, TICKET_LIMIT)}"
    if card.ticket_status:
        text += f" ({clip(card.ticket_status, TICKET_LIMIT)} in Jira when requested)"
    return text


def notice_message(kind: str, card: Card) -> tuple[str, list[Block]]:
    """A DM to the requester (or, for break-glass, to the project's administrators)."""
    scope = scope_text(card)
    headlines = {
        NotificationKind.APPROVED: f":white_check_mark: Your request {card.ref} for {scope} is approved.",
        NotificationKind.DENIED: f":no_entry: Your request {card.ref} for {scope} is denied.",
        NotificationKind.EXPIRING: f":hourglass: Your access to {scope} ({card.ref}) ends within 15 minutes.",
        NotificationKind.EXPIRED: f":lock: Your access to {scope} ({card.ref}) has ended.",
        NotificationKind.REVOKED: f":lock: Your access to {scope} ({card.ref}) was revoked.",
        NotificationKind.TIMED_OUT: f":zzz: Nobody decided on {card.ref} ({scope}) in time.",
        NotificationKind.BREAKGLASS: (
            f":rotating_light: Break-glass: *{escape(card.requester)}* took access to {scope} "
            f"for {duration_text(card.duration)}. Reason: {clip(card.reason, REASON_LIMIT)}. "
            "It must be reviewed."
        ),
    }
    headline = headlines[NotificationKind(kind)]
    blocks: list[Block] = [
        section(headline),
        {
            "type": "context",
            "elements": [mrkdwn(f"{status_text(card)}  <{link_target(card.link)}|Open in Veil>")],
        },
    ]
    if kind == NotificationKind.APPROVED:
        blocks[1:1] = _oncall_context(card)
    if kind == NotificationKind.EXPIRING:
        blocks.append(
            {
                "type": "actions",
                "elements": [button("Extend", EXTEND, url=card.extend_link, style="primary")],
            }
        )
    return f"{headline} {status_text(card)}", blocks


def _oncall_context(card: Card) -> list[Block]:
    """The line about the request's on-call schedule, if any (names from the provider: escaped)."""
    if not card.oncall:
        return []
    return [{"type": "context", "elements": [mrkdwn(clip(f":pager: {card.oncall}", SECTION_LIMIT))]}]


def _policy_needs(card: Card) -> str:
    if not card.stages:
        return f"{_approvals_required(card)} needed"
    return f"{len(card.stages)} stages: {' → '.join(escape(name) for name in card.stages)}"


def reminder_text(card: Card) -> str:
    return f":bell: Reminder: {card.ref} is still waiting for {waiting_for(card)} ({approval_count(card)})."


def escalation_banner(card: Card, mention: str) -> str:
    """`mention` is configuration (Slack syntax such as <!subteam^S0123>), so it is not escaped."""
    waited = f":rotating_light: *Escalated*: {card.ref} has waited since {when(card.created_at)}."
    return f"{waited} {mention}".strip()


def reason_modal(
    *, callback_id: str, title: str, submit: str, intro: str, field: str, label: str, private_metadata: str
) -> Block:
    """A modal asking for the required reason of a refusal (a denied request, a rejected change)."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": private_metadata,
        "title": {"type": "plain_text", "text": title[:24]},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(intro),
            {
                "type": "input",
                "block_id": field,
                "label": {"type": "plain_text", "text": label},
                "element": {
                    "type": "plain_text_input",
                    "action_id": field,
                    "multiline": True,
                    "max_length": 1000,
                },
            },
        ],
    }


def notice_modal(*, title: str, text: str) -> Block:
    """A modal that only says something (it replaces a reason modal that cannot be submitted)."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": title[:24]},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [section(cut(text, SECTION_LIMIT))],
    }


def reason_modal_value(body: dict[str, Any], field: str) -> str:
    """What was typed in a submitted `reason_modal` (its `field` names both block and input), stripped."""
    values = body["view"]["state"]["values"]
    return str((values.get(field) or {}).get(field, {}).get("value") or "").strip()


def deny_modal(card: Card, private_metadata: str) -> Block:
    return reason_modal(
        callback_id=DENY_MODAL,
        title=f"Deny {card.ref}",
        submit="Deny",
        intro=f"*{escape(card.requester)}* {asks_text(card)}.",
        field="reason",
        label="Why is it denied? The requester will read this.",
        private_metadata=private_metadata,
    )


def _buttons(card: Card) -> list[Block]:
    if card.web_confirm:
        approve = button("Approve in Veil", APPROVE_IN_WEB, url=card.link, style="primary")
    else:
        confirm = confirm_dialog(
            f"Approve {card.ref}?",
            cut(
                f"{escape(card.requester)} will see unmasked values of {scope_text(card)} "
                f"for {duration_text(card.duration)}.",
                CONFIRM_TEXT_LIMIT,
            ),
        )
        approve = button("Approve", APPROVE, value=str(card.pk), style="primary", confirm=confirm)
    return [
        approve,
        button("Deny", DENY, value=str(card.pk), style="danger"),
        button("Open in Veil", OPEN_IN_WEB, url=card.link),
    ]


def button(
    label: str,
    action_id: str,
    *,
    value: str = "",
    url: str = "",
    style: str = "",
    confirm: Block | None = None,
) -> Block:
    block: Block = {"type": "button", "text": {"type": "plain_text", "text": label}, "action_id": action_id}
    if value:
        block["value"] = value
    if url:
        block["url"] = url
    if style:
        block["style"] = style
    if confirm:
        block["confirm"] = confirm
    return block


def confirm_dialog(title: str, text: str) -> Block:
    """The "are you sure?" dialog of an Approve button: approving acts at once, with no undo."""
    return {
        "title": {"type": "plain_text", "text": title},
        "text": {"type": "mrkdwn", "text": text},
        "confirm": {"type": "plain_text", "text": "Approve"},
        "deny": {"type": "plain_text", "text": "Back"},
    }


def _columns_text(card: Card) -> str:
    """One line per column with its classification, as many as fit; then how many are left out."""
    if not card.table:
        return f"every column of every table; the most sensitive is {card.level_label}"
    lines = ["every column of the table:"] if card.all_columns else []
    budget = SECTION_LIMIT - 200  # the heading, and the line saying what is left out
    for column in card.columns:
        line = f"`{escape(column.name)}` · {level_label(column.level)}"
        if sum(len(kept) + 1 for kept in lines) + len(line) > budget:
            break
        lines.append(line)
    listed = len(lines) - card.all_columns
    left_out = max(card.column_count, len(card.columns)) - listed
    if left_out > 0:
        lines.append(f"…and {left_out} more: the full list is in Veil.")
    return "\n".join(lines)


def _web_confirm_reason(card: Card) -> str:
    return "Unclassified data" if card.level < 0 else f"Level {card.level_label}"


def section(text: str) -> Block:
    return {"type": "section", "text": mrkdwn(text)}


def mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text}


def link_target(url: str) -> str:
    """A URL inside <url|label>: escaped, and `|` (which would end the URL) percent-encoded."""
    return escape(url).replace("|", "%7C")
