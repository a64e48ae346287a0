"""Break-glass: immediate access for an incident, without an approver, under a short cap, with
security alerted at once and a review owed by someone else afterwards."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from audit.services import record_event
from identity.models import User
from identity.selectors import role_names_of_user
from identity.services import actor_for
from jitaccess.errors import NotAllowed, RequestError
from jitaccess.formatting import duration_label
from jitaccess.models import AccessRequest, NotificationKind
from jitaccess.selectors.approvers import people_with_perm
from jitaccess.selectors.scopes import Scope, access_settings, check_something_masked, scope_columns
from jitaccess.services.notifications import notify
from jitaccess.services.requests import approve_and_grant, locked_request, request_open, request_target
from masking.permissions import ADMINISTER_POLICY


def breakglass_take(
    *, requester: User, scope: Scope, duration: timedelta, reason: str, channel: str
) -> AccessRequest:
    """Immediate access for an incident: no approver, a short cap, security alerted at once, and
    a review owed by someone else afterwards."""
    project = scope.database.project
    project_settings = access_settings(project)
    # Unsaved settings (the defaults) name no break-glass role.
    roles = project_settings.breakglass_roles.values_list("name", flat=True) if project_settings.pk else []
    allowed = set(roles)
    if not allowed or allowed.isdisjoint(role_names_of_user(requester)):
        raise NotAllowed(f"You are not in a break-glass role of project {project.key}.")
    if not reason.strip():
        raise RequestError("reason", "is required for break-glass: name the incident")
    if duration <= timedelta(0) or duration > project_settings.breakglass_max_duration:
        raise RequestError(
            "duration",
            f"break-glass lasts at most {duration_label(project_settings.breakglass_max_duration)}",
        )
    columns = scope_columns(scope)
    # As a request is: a scope the taker already sees in clear is refused before anyone is alerted.
    check_something_masked(requester, None, scope, columns, to="break the glass for")
    with transaction.atomic():
        request = request_open(
            requester=requester,
            scope=scope,
            columns=columns,
            duration=duration,
            reason=reason,
            action="breakglass.taken",
            channel=channel,
            detail={},
            policy_title="Break-glass",
            approvals_required=0,
            pending_until=timezone.now(),
            is_breakglass=True,
        )
        approve_and_grant(request, approver=None, channel=channel)
        admins = people_with_perm(project, ADMINISTER_POLICY)
        emails = [e.strip() for e in project_settings.security_emails.split(",") if e.strip()]
        notify(
            request, NotificationKind.BREAKGLASS, [u for u in admins if u.pk != requester.pk], emails=emails
        )
    return request


@transaction.atomic
def breakglass_review(*, request_id: int, reviewer: User, notes: str, channel: str) -> AccessRequest:
    request = locked_request(request_id)
    if not request.is_breakglass:
        raise RequestError("request", "is not a break-glass grant")
    if request.reviewed_at is not None:
        raise RequestError("request", f"was already reviewed by {request.reviewed_by}")
    if reviewer.canonical_subject == request.requester.canonical_subject:
        raise NotAllowed("Someone other than the person who broke the glass must review it.")
    if not reviewer.has_perm(ADMINISTER_POLICY, request.project):
        raise NotAllowed("Only a project administrator can review break-glass access.")
    if not notes.strip():
        raise RequestError("notes", "say what the review found")
    request.reviewed_by, request.reviewed_at, request.review_notes = reviewer, timezone.now(), notes.strip()
    request.save(update_fields=["reviewed_by", "reviewed_at", "review_notes"])
    record_event(
        action="breakglass.reviewed",
        actor=actor_for(reviewer),
        channel=channel,
        target=request_target(request),
        project=request.project.key,
        detail={"notes": request.review_notes},
    )
    return request
