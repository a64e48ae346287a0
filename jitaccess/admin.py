from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from audit.admin import ReadOnlyAdmin
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
    list_display = ["project", "max_duration", "pending_timeout", "breakglass_max_duration"]
    filter_horizontal = ["breakglass_roles"]


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
    list_display = ["request", "kind", "channel", "recipient", "destination", "state", "attempts", "sent_at"]
    list_filter = ["state", "channel", "kind"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


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
