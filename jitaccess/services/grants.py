"""Ending grants: revoke or relinquish (with the extensions asked for them), end everything of a
person the directory deactivated, and the sweep that expires grants, times out undecided requests
and warns before expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audit.models import Channel
from audit.services import SYSTEM, Actor, record_event
from identity.models import User
from identity.services import actor_for
from jitaccess.errors import NotAllowed, RequestError
from jitaccess.models import AccessRequest, NotificationKind
from jitaccess.selectors.approvers import end_refusal
from jitaccess.selectors.requests import DIRECTORY_DEACTIVATION, live_extensions
from jitaccess.services.notifications import notify
from jitaccess.services.requests import locked_request, request_target
from jitaccess.states import LIVE_STATES, Action, State, next_state
from masking.services.policy import exemption_revoke

EXPIRY_NOTICE = timedelta(minutes=15)
END_REASON_LIMIT = 2000


@transaction.atomic
def grant_end(*, request_id: int, user: User, action: str, channel: str, reason: str = "") -> AccessRequest:
    """Revoke (an approver or a project administrator) or relinquish (the requester) a grant,
    and with it the extensions asked for it: approved ones (scheduled to start when it ends) end
    the same way, pending ones are cancelled.

    `reason` is optional (Slack and older clients pass none); it is kept in the audit event's
    detail and shown to the requester with the revocation (`selectors.end_reason`).

    Effective at once: the grants' exemptions are revoked in the same transaction, which moves the
    grants epoch that every decision reads.
    """
    reason = reason.strip()
    if len(reason) > END_REASON_LIMIT:
        raise RequestError("reason", f"is too long: at most {END_REASON_LIMIT} characters")
    request = locked_request(request_id, "grant")
    if refusal := end_refusal(request, user, action):
        raise NotAllowed(refusal)
    _end_with_extensions(
        request,
        actor=actor_for(user),
        ended_by=user,
        action=action,
        channel=channel,
        because=None,
        reason=reason,
    )
    if action == Action.REVOKE:
        notify(request, NotificationKind.REVOKED, [request.requester])
    return request


def _end_with_extensions(
    request: AccessRequest,
    *,
    actor: Actor,
    ended_by: User | None,
    action: str,
    channel: str,
    because: AccessRequest | None,
    reason: str = "",
) -> None:
    """End one locked request (`action`; an extension still pending is cancelled), then its
    extensions. `ended_by` is the person who ended it; None when no person did (directory sync)."""
    pending = because is not None and request.state == State.PENDING
    request.state = next_state(request.state, Action.CANCEL if pending else action)
    request.ended_at, request.ended_by = timezone.now(), ended_by
    request.save(update_fields=["state", "ended_at", "ended_by"])
    if request.grant is not None:
        exemption_revoke(exemption=request.grant, actor=actor, channel=channel)
    detail: dict[str, str] = {"because": f"{because.ref} was {because.state}"} if because else {}
    if reason:
        detail["reason"] = reason
    record_event(
        action=f"request.{request.state}",
        actor=actor,
        channel=channel,
        target=request_target(request),
        project=request.project.key,
        detail=detail,
    )
    notify(request, NotificationKind.STATE_CHANGED, [])
    extensions = live_extensions(request).select_for_update(of=("self",)).select_related("grant", "project")
    for extension in extensions.order_by("pk"):
        _end_with_extensions(
            extension,
            actor=actor,
            ended_by=ended_by,
            action=action,
            channel=channel,
            because=request,
            reason=reason,
        )


def requests_end_for_deactivated(person: User, actor: Actor, channel: str) -> None:
    """The IdP deactivated `person`: revoke their grants in force (and the extensions asked for
    them) and cancel their pending requests, agents' included, in the deactivation's transaction
    (`identity.directory.deactivation_handlers`). Attributed to `actor`, the directory's service
    account; no person ended them, so `ended_by` stays empty and the event says why.

    Locking contract: each request row is taken FOR UPDATE and its state re-checked, so a request
    ended meanwhile (or with the grant it extends) is left as it is."""
    live = AccessRequest.objects.filter(requester=person, state__in=LIVE_STATES).order_by("pk")
    for pk in live.values_list("pk", flat=True):
        request = locked_request(pk, "grant")
        if request.state not in LIVE_STATES:
            continue
        action = Action.CANCEL if request.state == State.PENDING else Action.REVOKE
        _end_with_extensions(
            request,
            actor=actor,
            ended_by=None,
            action=action,
            channel=channel,
            because=None,
            reason=DIRECTORY_DEACTIVATION,
        )


@dataclass
class SweepResult:
    expired: int = 0
    timed_out: int = 0
    expiry_notices: int = 0


def requests_sweep(*, now: datetime | None = None) -> SweepResult:
    """Expire grants past their time, time out undecided requests, warn 15 minutes before expiry.

    Idempotent and safe to run concurrently: each request is claimed FOR UPDATE SKIP LOCKED and
    re-checked; notices are deduplicated by key. The decision path never waits for this: it
    compares `expires_at` with the clock itself.
    """
    now = now or timezone.now()
    result = SweepResult()
    for pk in AccessRequest.objects.filter(state=State.APPROVED, expires_at__lte=now).values_list(
        "pk", flat=True
    ):
        result.expired += _sweep_one(pk, State.APPROVED, Action.EXPIRE, now)
    for pk in AccessRequest.objects.filter(state=State.PENDING, pending_until__lte=now).values_list(
        "pk", flat=True
    ):
        result.timed_out += _sweep_one(pk, State.PENDING, Action.TIME_OUT, now)
    soon = AccessRequest.objects.filter(
        state=State.APPROVED, expires_at__gt=now, expires_at__lte=now + EXPIRY_NOTICE
    ).select_related("requester", "project")
    for request in soon:
        with transaction.atomic():
            result.expiry_notices += notify(request, NotificationKind.EXPIRING, [request.requester])
    return result


@transaction.atomic
def _sweep_one(pk: int, expected: str, action: str, now: datetime) -> int:
    request = (
        AccessRequest.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("requester", "project")
        .filter(pk=pk, state=expected)
        .first()
    )
    if request is None:
        return 0  # another sweeper has it, or it changed meanwhile
    request.state = next_state(request.state, action)
    if action == Action.EXPIRE:
        # Access ended at expires_at (the decision path stopped honouring it then), not when this
        # sweep ran, which may be long after if no worker was up: both are kept, apart.
        request.ended_at, request.expiry_processed_at = request.expires_at, now
        detail = {"expires_at": request.expires_at, "ended_at": request.expires_at, "processed_at": now}
    else:
        request.ended_at, detail = now, {}
    request.save(update_fields=["state", "ended_at", "expiry_processed_at"])
    kind = NotificationKind.EXPIRED if action == Action.EXPIRE else NotificationKind.TIMED_OUT
    record_event(
        action="grant.expired" if action == Action.EXPIRE else "request.timed_out",
        actor=SYSTEM,
        channel=Channel.SYSTEM,
        target=request_target(request),
        project=request.project.key,
        detail=detail,
    )
    notify(request, kind, [request.requester])
    notify(request, NotificationKind.STATE_CHANGED, [])
    return 1
