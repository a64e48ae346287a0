"""What happens when someone clicks in a Veil message or submits the deny modal (slack-bolt).

Slack wants an answer within 3 seconds, so every listener acknowledges first and decides after,
in a lazy listener (the Django adapter runs it on a worker thread with its own database
connection). A decision (Approve, a deny or reject modal submitted, a policy change's Approve,
an access review's Keep or Remove) is committed as a `SlackClick` inside the acknowledgement and
applied from that row (`clicks`): by the lazy listener, or by the sweep if the node died first.
Only the deny modal is opened inside the window, because its trigger ID expires with it.
Decisions go through `jitaccess.services`, which locks the request row: double clicks, Slack
retries, replayed payloads and two approvers at once serialise there, and the second one is
told the outcome of the first. Messages are updated through the outbox, not from here.
Asking for access from Slack (`/veil`, the shortcut, the request modal) is in `requesting`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from slack_bolt import Ack, App
from slack_bolt.adapter.django import SlackRequestHandler

from audit.models import Channel
from identity.models import User
from jitaccess.errors import NotAllowed, RequestError
from jitaccess.models import AccessRequest, Approval
from jitaccess.reviews import slack_interactions as reviews
from jitaccess.reviews.services import KEEP, REMOVE
from jitaccess.reviews.slack_messages import REVIEW_KEEP, REVIEW_REMOVE
from jitaccess.selectors.approvers import can_approve
from jitaccess.selectors.stages import stage_refusal
from jitaccess.services.requests import request_approve, request_deny
from jitaccess.slack import policy_interactions as policy
from jitaccess.slack import requesting
from jitaccess.slack.answers import Click, remember_modal, replace_modal, reply, unlinked_modal
from jitaccess.slack.blocks import (
    APPROVE,
    APPROVE_IN_WEB,
    DENY,
    DENY_MODAL,
    EXTEND,
    NOTHING_CHANGED,
    OPEN_IN_WEB,
    deny_modal,
    escape,
    progress_text,
    reason_modal_value,
    when,
)
from jitaccess.slack.clicks import click_apply, click_key, clicks_waiting
from jitaccess.slack.client import slack_client
from jitaccess.slack.linking import UNLINKED_EXPLANATION, clicker, people_on
from jitaccess.slack.models import SlackClick, SlackClickKind
from jitaccess.slack.policy_messages import POLICY_APPROVE, POLICY_OPEN, POLICY_REJECT, POLICY_REJECT_MODAL
from jitaccess.slack.request_modal import COMMAND, REQUEST_MODAL, SHORTCUT, SUGGESTED
from jitaccess.slack.selectors import card_for, linked_user, needs_web_confirmation, request_link
from jitaccess.slack.services import click_refused_record
from jitaccess.states import Action, InvalidTransition, State

logger = logging.getLogger(__name__)


def request_handler() -> SlackRequestHandler:
    return _handler(settings.SLACK_BOT_TOKEN, settings.SLACK_SIGNING_SECRET, settings.SLACK_API_URL)


@functools.cache
def _handler(token: str, signing_secret: str, api_url: str) -> SlackRequestHandler:
    """One Bolt app per configuration (the arguments only key the cache; settings are read inside)."""
    app = App(
        client=slack_client(),
        signing_secret=signing_secret,
        # Ack functions run on the request thread and return the HTTP answer; lazy ones run after.
        process_before_response=True,
        # The view verifies signatures itself, so that forgeries are audited.
        request_verification_enabled=False,
        token_verification_enabled=False,
    )
    app.action(APPROVE)(ack=record_click(SlackClickKind.APPROVE), lazy=[apply_recorded])
    app.action(DENY)(ack=open_deny_modal, lazy=[explain_deny_refusal])
    app.action(re.compile(f"^({APPROVE_IN_WEB}|{OPEN_IN_WEB}|{EXTEND})$"))(acknowledge)  # links
    app.view(DENY_MODAL)(ack=check_deny_reason, lazy=[apply_recorded])
    app.action(POLICY_APPROVE)(ack=record_click(SlackClickKind.POLICY_APPROVE), lazy=[apply_recorded])
    app.action(POLICY_REJECT)(ack=policy.open_reject_modal, lazy=[policy.explain_reject_refusal])
    app.action(POLICY_OPEN)(acknowledge)  # a link
    app.view(POLICY_REJECT_MODAL)(ack=policy.check_note, lazy=[apply_recorded])
    app.command(COMMAND)(ack=requesting.command_received, lazy=[requesting.command_after_ack])
    app.shortcut(SHORTCUT)(ack=requesting.shortcut_received, lazy=[requesting.shortcut_after_ack])
    app.options(re.compile(f"^({'|'.join(SUGGESTED)})$"))(requesting.suggest)
    app.view(REQUEST_MODAL)(ack=requesting.request_submitted, lazy=[requesting.dm_requester])
    app.action(REVIEW_KEEP)(ack=record_click(SlackClickKind.REVIEW_KEEP), lazy=[apply_recorded])
    app.action(REVIEW_REMOVE)(ack=record_click(SlackClickKind.REVIEW_REMOVE), lazy=[apply_recorded])
    app.action(re.compile(".*"))(ack=acknowledge, lazy=[unknown_action])  # last: the first match wins
    return SlackRequestHandler(app)


def acknowledge(ack: Ack) -> None:
    ack()


def record_click(kind: str) -> Callable[[Ack, dict[str, Any]], None]:
    """The acknowledgement of a decision's button: the click is committed before Slack's 200."""

    def record(ack: Ack, body: dict[str, Any]) -> None:
        Click.from_action(body).record(body, kind)
        ack()

    return record


def apply_recorded(body: dict[str, Any]) -> None:
    """After the acknowledgement: apply the click it recorded, unless it is applied already."""
    _apply(click_key(body))


def apply_waiting_clicks() -> int:
    """The sweep: apply clicks their node did not (it died after Slack's 200, say)."""
    waiting = clicks_waiting()
    for key in waiting:
        _apply(key)
    return len(waiting)


def _apply(key: str) -> None:
    applied = click_apply(key, _decision)
    if applied is not None:
        click, text = applied
        reply(Click.recorded(click), text)


def _decision(recorded: SlackClick) -> str:
    """Make the recorded decision; the clicker's reply says what happened."""
    click = Click.recorded(recorded)
    match recorded.kind:
        case SlackClickKind.APPROVE:
            return approve(click)
        case SlackClickKind.DENY:
            return deny(click, recorded.text)
        case SlackClickKind.POLICY_APPROVE:
            return policy.approve(click.slack_user_id, click.request_id)
        case SlackClickKind.POLICY_REJECT:
            return policy.reject(click.slack_user_id, click.request_id, recorded.text)
        case SlackClickKind.REVIEW_KEEP | SlackClickKind.REVIEW_REMOVE:
            decision = KEEP if recorded.kind == SlackClickKind.REVIEW_KEEP else REMOVE
            return reviews.answer(click.slack_user_id, click.request_id, decision)
    raise ValueError(f"unknown Slack click kind {recorded.kind!r}")


def approve(click: Click) -> str:
    """Record the clicker's approval; the reply says what happened."""
    request = _request(click)
    if request is None:
        return f"This request is no longer in Veil. {NOTHING_CHANGED}"
    if request.state != State.PENDING:
        return _already(request, Action.APPROVE)
    user = clicker(click.slack_user_id, people_on(request))
    if user is None:
        return _unlinked(request, click, Action.APPROVE)
    if needs_web_confirmation(request):
        level = (
            "unclassified data"
            if request.classification_level < 0
            else f"level {request.classification_level}"
        )
        return (
            f"{request.ref} covers {level}: approve it in Veil after signing in, "
            f"<{request_link(request.pk)}|here>. {NOTHING_CHANGED}"
        )
    # Wording only (the service decides under its lock): a second click is told it added nothing.
    repeated = Approval.objects.filter(request=request, approver_subject=user.canonical_subject).exists()
    try:
        request = request_approve(request_id=request.pk, approver=user, channel=Channel.SLACK)
    except NotAllowed as exc:
        return _refused(request, user, click, Action.APPROVE, str(exc))
    except InvalidTransition:
        return _already(AccessRequest.objects.get(pk=request.pk), Action.APPROVE)
    if request.state == State.APPROVED and request.expires_at:
        return f":white_check_mark: You approved {request.ref}: access until {when(request.expires_at)}."
    card = card_for(request.pk)
    if repeated:
        return f"You already approved {request.ref}: {progress_text(card)}. {NOTHING_CHANGED}"
    return f":white_check_mark: Your approval of {request.ref} is recorded: {progress_text(card)}."


def open_deny_modal(ack: Ack, body: dict[str, Any]) -> None:
    """Inside the 3-second window: the trigger ID dies with it. Database reads only: whether the
    clicker is on call for the request's schedule is asked after the ack, which then replaces the
    modal with the refusal if they are not."""
    ack()
    click = Click.from_action(body)
    if click.request_id is None or _deny_refusal(click, ask_oncall=False):
        return
    view = deny_modal(card_for(click.request_id), click.metadata())
    opened = slack_client().views_open(trigger_id=body["trigger_id"], view=view)
    oncall = AccessRequest.objects.filter(pk=click.request_id).exclude(oncall_schedule_id="").exists()
    remember_modal(body, opened, unsettled=oncall)


def explain_deny_refusal(body: dict[str, Any]) -> None:
    """After the ack: tell a clicker who may not deny why (privately; audited unless the request
    has just ended). One whose modal opened because Veil did not know them yet is worked out now,
    with Slack's help; if they may not deny either, the modal says why instead of asking a reason."""
    click = Click.from_action(body)
    modal = unlinked_modal(body)
    if (
        modal
        and (request := _request(click)) is not None
        and clicker(click.slack_user_id, people_on(request)) is None
    ):
        replace_modal(body, modal, f"Deny {request.ref}", _unlinked(request, click, Action.DENY))
        return
    refusal = _deny_refusal(click)
    if not refusal:
        return
    request, user = _request(click), linked_user(click.slack_user_id)
    if request is not None and request.state == State.PENDING and user is not None:
        reason = refusal.removesuffix(f" {NOTHING_CHANGED}")
        click_refused_record(
            request=request, user=user, slack_user_id=click.slack_user_id, action=Action.DENY, reason=reason
        )
    if modal:
        replace_modal(body, modal, f"Deny {request.ref if request else ''}", refusal)
    else:
        reply(click, refusal)


def _deny_refusal(click: Click, *, ask_oncall: bool = True) -> str:
    """Why the clicker may not deny, or "". Database only, but for the on-call provider (not asked
    with `ask_oncall=False`, inside the ack): a clicker not linked yet, or one who may be on call,
    is given the modal, and worked out (with Slack's or the provider's help) after the ack."""
    request = _request(click)
    if request is None:
        return f"This request is no longer in Veil. {NOTHING_CHANGED}"
    if request.state != State.PENDING:
        return _already(request, Action.DENY)
    user = linked_user(click.slack_user_id)
    if user is not None and user.canonical_subject == request.requester.canonical_subject:
        return f"You cannot decide your own request; cancel it in Veil instead. {NOTHING_CHANGED}"
    if user is not None and not can_approve(request, user, oncall=ask_oncall):
        if not ask_oncall and request.oncall_schedule_id:
            return ""  # perhaps on call: asked after the ack
        refusal = stage_refusal(request, user) or "You are not an approver for this request."
        return f"{refusal} {NOTHING_CHANGED}"
    return ""


def check_deny_reason(ack: Ack, body: dict[str, Any]) -> None:
    """A reason keeps the modal open; with one, the denial is recorded before the modal closes."""
    reason = reason_modal_value(body, "reason")
    if not reason:
        ack(response_action="errors", errors={"reason": "Say why the request is denied."})
        return
    Click.from_submission(body).record(body, SlackClickKind.DENY, reason)
    ack()


def deny(click: Click, reason: str) -> str:
    request = _request(click)
    if request is None:
        return f"This request is no longer in Veil. {NOTHING_CHANGED}"
    user = clicker(click.slack_user_id, people_on(request))
    if user is None:
        return _unlinked(request, click, Action.DENY)
    try:
        request_deny(request_id=request.pk, approver=user, reason=reason, channel=Channel.SLACK)
    except NotAllowed as exc:
        return _refused(request, user, click, Action.DENY, str(exc))
    except InvalidTransition:
        return _already(AccessRequest.objects.get(pk=request.pk), Action.DENY)
    except RequestError as exc:
        return f"{exc.message}. {NOTHING_CHANGED}"
    return f":no_entry: You denied {request.ref}. {escape(str(request.requester))} is told why."


def unknown_action(body: dict[str, Any]) -> None:
    click = Click.from_action(body)
    logger.warning(
        "unknown Slack action %r from %s", body["actions"][0].get("action_id"), click.slack_user_id
    )
    reply(click, f"Veil does not know this button. {NOTHING_CHANGED}")


def _request(click: Click) -> AccessRequest | None:
    if click.request_id is None:
        return None
    return AccessRequest.objects.select_related("requester", "project").filter(pk=click.request_id).first()


def _already(request: AccessRequest, action: str) -> str:
    return f"{request.ref}: {InvalidTransition(request.state, action)}. {NOTHING_CHANGED}"


def _unlinked(request: AccessRequest, click: Click, action: str) -> str:
    click_refused_record(
        request=request, user=None, slack_user_id=click.slack_user_id, action=action, reason="unlinked"
    )
    return (
        f"{UNLINKED_EXPLANATION} You can decide in Veil: <{request_link(request.pk)}|{request.ref}>. "
        + NOTHING_CHANGED
    )


def _refused(request: AccessRequest, user: User, click: Click, action: str, reason: str) -> str:
    click_refused_record(
        request=request, user=user, slack_user_id=click.slack_user_id, action=action, reason=reason
    )
    return f"{reason} {NOTHING_CHANGED}"
