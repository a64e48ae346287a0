from typing import Any

from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.admin import ReadOnlyAdmin
from audit.models import Channel
from jitaccess.delivery import retry_failed
from jitaccess.models import (
    AccessRequest,
    Approval,
    ApprovalPolicy,
    Notification,
    ProjectAccessSettings,
    SlackMessage,
    SlackRoute,
    SlackUserLink,
)
from jitaccess.services import access_settings_state, record_access_settings_change
from jitaccess.tasks import enqueue_deliveries


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(ReadOnlyAdmin):
    """Read-only here: approval policies are part of the versioned policy, edited on the policy
    pages (/policy/approval-policies/) or applied as code, so every change is reviewed and versioned."""

    list_display = [
        "project",
        "position",
        "title",
        "condition",
        "approvals_required",
        "auto_approve",
        "enabled",
    ]
    list_filter = ["project", "enabled"]


@admin.register(ProjectAccessSettings)
class ProjectAccessSettingsAdmin(admin.ModelAdmin):
    """Who may break the glass, for how long, the caps and who is alerted: each save is recorded
    in the audit log with what changed (in the admin's transaction, after the roles are saved)."""

    list_display = ["project", "max_duration", "pending_timeout", "breakglass_max_duration"]
    filter_horizontal = ["breakglass_roles"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        request._access_settings_before = (  # type: ignore[attr-defined]
            access_settings_state(obj) if obj is not None else {}
        )
        return super().get_form(request, obj, change, **kwargs)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        record_access_settings_change(
            settings=form.instance,
            before=getattr(request, "_access_settings_before", {}),
            actor=request.user,  # type: ignore[arg-type]
            channel=Channel.WEB,
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # back to the defaults is a change like any other: edit the values


class ApprovalInline(admin.TabularInline):
    model = Approval
    extra = 0
    can_delete = False
    readonly_fields = ["approver", "approver_subject", "channel", "created_at"]


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyAdmin):
    """Read-only: requests change state only through the services (audited, locked)."""

    list_display = ["__str__", "requester", "state", "created_at", "expires_at", "is_breakglass"]
    list_filter = ["state", "is_breakglass", "project"]
    search_fields = ["reason", "requester__username", "table_name"]
    inlines = [ApprovalInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # as the request form does


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """The outbox. Rows are written by the services and change only through delivery; a row that
    gave up (failed) is put back with the "Retry delivery" action once its channel works again."""

    list_display = [
        "pk",
        "request_ref",
        "kind",
        "channel",
        "to",
        "state",
        "attempts",
        "last_error",
        "created_at",
    ]
    list_display_links = ["pk"]
    list_filter = ["state", "channel", "kind"]
    list_select_related = ["request", "recipient"]
    readonly_fields = [f.name for f in Notification._meta.fields]
    actions = ["retry_delivery"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Request", ordering="request")
    def request_ref(self, notification: Notification) -> str:
        return notification.request.ref

    @admin.display(description="To")
    def to(self, notification: Notification) -> str:
        return str(notification.recipient or notification.destination)

    @admin.action(permissions=["change"], description="Retry delivery of the selected failed notifications")
    def retry_delivery(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        chosen = list(queryset.values_list("pk", flat=True))
        retried = retry_failed(ids=chosen)
        transaction.on_commit(lambda: enqueue_deliveries(retried), robust=True)
        if retried:
            self.message_user(
                request,
                f"{len(retried)} notification(s) put back in the outbox with fresh attempts: the "
                "workers send them within a minute (the Pending and Sent filters show how it went).",
                messages.SUCCESS,
            )
        skipped = len(chosen) - len(retried)
        if skipped:
            self.message_user(
                request,
                f"{skipped} selected notification(s) left alone: only failed ones are retried "
                "(pending ones are still being tried, sent ones were delivered).",
                messages.WARNING,
            )


@admin.register(SlackRoute)
class SlackRouteAdmin(admin.ModelAdmin):
    list_display = ["project", "channel", "dm_approvers", "escalation_channel"]


@admin.register(SlackUserLink)
class SlackUserLinkAdmin(admin.ModelAdmin):
    """Links are made by email match or `manage.py slack link`; here they can be reviewed and removed."""

    list_display = ["slack_user_id", "user", "verified_via", "email", "created_at"]
    readonly_fields = ["slack_user_id", "user", "verified_via", "email", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SlackMessage)
class SlackMessageAdmin(admin.ModelAdmin):
    list_display = ["request", "destination", "channel", "ts", "posted_at"]
    readonly_fields = ["request", "destination", "channel", "ts", "claimed_until", "posted_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
