"""Approve and Reject clicks on policy-change messages (registered in `interactions._handler`, so
they take the same verified, replay-filtered path as request clicks, and are recorded in the
acknowledgement and applied from the record as they are).

Decisions go through `policy_change_approve` / `policy_change_reject`, which lock the change and
refuse the author (by IdP subject) and anyone who may not change what it touches; the clicker
gets the outcome as an ephemeral message. The message itself is updated by the sync that the
decision triggers on commit, as for a decision made in the web pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from slack_bolt import Ack

from audit.models import Channel
from identity.models import User
from jitaccess.slack.answers import Click, remember_modal, replace_modal, reply, unlinked_modal
from jitaccess.slack.blocks import NOTHING_CHANGED, reason_modal_value
from jitaccess.slack.client import slack_client
from jitaccess.slack.linking import UNLINKED_EXPLANATION, clicker
from jitaccess.slack.models import SlackClickKind
from jitaccess.slack.policy_messages import change_link, reject_modal
from jitaccess.slack.selectors import linked_user
from jitaccess.slack.services import policy_click_refused_record
from masking.models import ChangeState, PolicyChange
from masking.policy.access import may_administer, policy_deciders
from masking.services.policy_changes import (
    ChangeError,
    NotAllowed,
    policy_change_approve,
    policy_change_reject,
)

MAX_CANDIDATES = 50  # email lookups per unlinked click, each cached (see linking.py)


def approve(slack_user_id: str, change_id: int | None) -> str:
    change = _change(change_id)
    if change is None:
        return f"This policy change is no longer in Veil. {NOTHING_CHANGED}"
    if change.state != ChangeState.PENDING:
        return _already(change)
    user = clicker(slack_user_id, _candidates(change))
    if user is None:
        return _unlinked(change, slack_user_id, "approve")
    try:
        change = policy_change_approve(change_id=change.pk, approver=user, channel=Channel.SLACK)
    except NotAllowed as exc:
        return _refused(change, user, slack_user_id, "approve", str(exc))
    except ChangeError as exc:
        return f"{exc} {NOTHING_CHANGED}"
    if change.state == ChangeState.SUPERSEDED:
        return f"Change #{change.pk} was not applied: the policy changed since it was submitted."
    version = f" as version {change.version.number}" if change.version else ""
    return f":white_check_mark: You approved change #{change.pk}: applied{version}."


def open_reject_modal(ack: Ack, body: dict[str, Any]) -> None:
    """Inside the 3-second window (the trigger ID dies with it): database reads only."""

    ack()
    click = Click.from_action(body)
    if click.request_id is None or reject_refusal(click.slack_user_id, click.request_id):
        return
    change = PolicyChange.objects.get(pk=click.request_id)
    view = reject_modal(change, click.metadata())
    remember_modal(body, slack_client().views_open(trigger_id=body["trigger_id"], view=view))


def explain_reject_refusal(body: dict[str, Any]) -> None:
    """As for a request's Deny: a refused clicker is told why (privately, or in place of the
    reason in a modal opened before Veil knew who they were) and the attempt is audited."""

    click = Click.from_action(body)
    modal = unlinked_modal(body)
    change = _change(click.request_id)
    title = f"Reject change #{click.request_id}"
    if modal and change is not None and clicker(click.slack_user_id, _candidates(change)) is None:
        replace_modal(body, modal, title, _unlinked(change, click.slack_user_id, "reject"))
        return
    refusal = reject_refusal(click.slack_user_id, click.request_id)
    if not refusal:
        return
    if change is not None and change.state == ChangeState.PENDING:  # refused, not just stale
        user = linked_user(click.slack_user_id)
        policy_click_refused_record(
            change=change, user=user, slack_user_id=click.slack_user_id, action="reject", reason=refusal
        )
    if modal:
        replace_modal(body, modal, title, refusal)
    else:
        reply(click, refusal)


def reject_refusal(slack_user_id: str, change_id: int | None) -> str:
    """Why the reject modal does not open, or "". An unlinked clicker gets the modal: who they
    are is worked out when they submit it."""
    change = _change(change_id)
    if change is None:
        return f"This policy change is no longer in Veil. {NOTHING_CHANGED}"
    if change.state != ChangeState.PENDING:
        return _already(change)
    user = linked_user(slack_user_id)
    if user is not None and user.canonical_subject == change.author_subject:
        link = change_link(change)
        return f"This is your own change: withdraw it in Veil, <{link}|here>. {NOTHING_CHANGED}"
    if user is not None and not may_administer(user, change.projects, is_global=change.is_global):
        return f"You may not decide this policy change. {NOTHING_CHANGED}"
    return ""


def check_note(ack: Ack, body: dict[str, Any]) -> None:
    """A note keeps the modal open; with one, the rejection is recorded before the modal closes."""

    note = reason_modal_value(body, "note")
    if not note:
        ack(response_action="errors", errors={"note": "Say why the change is rejected."})
        return
    Click.from_submission(body).record(body, SlackClickKind.POLICY_REJECT, note)
    ack()


def reject(slack_user_id: str, change_id: int | None, note: str) -> str:
    change = _change(change_id)
    if change is None:
        return f"This policy change is no longer in Veil. {NOTHING_CHANGED}"
    user = clicker(slack_user_id, _candidates(change))
    if user is None:
        return _unlinked(change, slack_user_id, "reject")
    if user.canonical_subject == change.author_subject:
        own = "This is your own change: withdraw it in Veil."
        return _refused(change, user, slack_user_id, "reject", own)
    try:
        change = policy_change_reject(change_id=change.pk, user=user, note=note, channel=Channel.SLACK)
    except NotAllowed as exc:
        return _refused(change, user, slack_user_id, "reject", str(exc))
    except ChangeError as exc:
        return f"{exc} {NOTHING_CHANGED}"
    return f":no_entry: You rejected change #{change.pk}. Its author is told why in Veil."


def _candidates(change: PolicyChange) -> Iterator[User]:
    """The author, then people who may decide the change (read lazily: only an unlinked click
    needs them)."""
    if change.author is not None:
        yield change.author
    deciders = policy_deciders(change.projects, is_global=change.is_global, limit=MAX_CANDIDATES)
    yield from (user for user in deciders if user != change.author)


def _change(change_id: int | None) -> PolicyChange | None:
    if change_id is None:
        return None
    return PolicyChange.objects.select_related("author").filter(pk=change_id).first()


def _already(change: PolicyChange) -> str:
    return f"Change #{change.pk} is {change.get_state_display().lower()}. {NOTHING_CHANGED}"


def _refused(change: PolicyChange, user: User, slack_user_id: str, action: str, reason: str) -> str:
    policy_click_refused_record(
        change=change, user=user, slack_user_id=slack_user_id, action=action, reason=reason
    )
    return f"{reason} {NOTHING_CHANGED}"


def _unlinked(change: PolicyChange, slack_user_id: str, action: str) -> str:
    policy_click_refused_record(
        change=change, user=None, slack_user_id=slack_user_id, action=action, reason="unlinked"
    )
    return (
        f"{UNLINKED_EXPLANATION} You can decide in Veil: <{change_link(change)}|change #{change.pk}>. "
        + NOTHING_CHANGED
    )
