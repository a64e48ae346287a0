"""Reads for requests. Object permissions live here: every page and API goes through these."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from identity.models import User
from identity.selectors import role_names_of_user
from jitaccess.models import AccessRequest, Notification, NotificationChannel
from jitaccess.services import can_approve
from jitaccess.states import State
from masking.models import Project

_OVERSIGHT_PERMS = ["masking.approve_request", "masking.administer_policy", "masking.view_audit"]


def projects_overseen_by(user: User) -> QuerySet[Project]:
    """Projects where the person approves, administers or audits (and so sees every request)."""
    return get_objects_for_user(
        user, _OVERSIGHT_PERMS, klass=Project, any_perm=True, accept_global_perms=True
    )


def requests_visible_to(user: User) -> QuerySet[AccessRequest]:
    """A person sees their own requests, every request of the projects they oversee, and the
    requests whose approver roles they hold."""
    visible = Q(requester=user) | Q(project__in=projects_overseen_by(user))
    for role in role_names_of_user(user):
        # icontains on the JSON text works on SQLite too (JSON `contains` does not); roles are slugs.
        visible |= Q(approver_roles__icontains=f'"{role}"')
    return (
        AccessRequest.objects.filter(visible)
        .select_related("project", "requester", "database__instance", "service_account", "grant")
        .distinct()
    )


def request_for(user: User, request_id: int) -> AccessRequest:
    """The request if the person may see it; DoesNotExist otherwise (so its existence never leaks)."""
    return requests_visible_to(user).get(pk=request_id)


def approval_queue(user: User) -> list[AccessRequest]:
    """Pending requests the person may decide now (never their own)."""
    pending = (
        requests_visible_to(user).filter(state=State.PENDING).exclude(requester=user).order_by("created_at")
    )
    return [r for r in pending.prefetch_related("approvals") if can_approve(r, user)]


def inbox(user: User, limit: int = 50) -> QuerySet[Notification]:
    return (
        Notification.objects.filter(recipient=user, channel=NotificationChannel.WEB)
        .select_related("request__project", "request__requester", "request__database__instance")
        .order_by("-created_at")[:limit]
    )


def unreviewed_breakglass(user: User) -> QuerySet[AccessRequest]:
    return requests_visible_to(user).filter(is_breakglass=True, reviewed_at__isnull=True)
