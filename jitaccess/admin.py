"""Requests, approval policies, access settings, the outbox and Slack on the admin site. Each write
goes through an audited service; Slack routes are read-only while their project has the two-person
rule on, as the policy is."""

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from audit.admin import AuditedAdmin, ReadOnlyAdmin
from audit.models import Channel
from identity.models import User
from identity.services import actor_for
from jitaccess.delivery import retry_failed
from jitaccess.models import (
    AccessRequest,
    Approval,
    ApprovalPolicy,
    ApprovalStage,
    Notification,
    ProjectAccessSettings,
    SlackMessage,
    SlackRoute,
    SlackUserLink,
)
from jitaccess.selectors.scopes import access_settings_state
from jitaccess.services.access_settings import record_access_settings_change
from jitaccess.services.notifications import enqueue_deliveries
from jitaccess.slack.services import slack_route_set, slack_user_unlink
from masking.policy.access import needs_second_person


class ApprovalStageInline(admin.TabularInline):
    model = ApprovalStage
    extra = 0
    can_delete = False
    fields = ("position", "name", "approver_roles", "approvals_required")
    readonly_fields = fields


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
    inlines = [ApprovalStageInline]


@admin.register(ProjectAccessSettings)
class ProjectAccessSettingsAdmin(AuditedAdmin):
    """Who may break the glass, for how long, the caps and who is alerted: each save is recorded
    in the audit log with what changed (in the admin's transaction, after the roles are saved).
    Not deleted here: back to the defaults is a change like any other (edit the values)."""

    list_display = ["project", "max_duration", "pending_timeout", "breakglass_max_duration"]
    filter_horizontal = ["breakglass_roles"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        request._access_settings_before = (  # type: ignore[attr-defined]
            access_settings_state(obj) if obj is not None else {}
        )
        return super().get_form(request, obj, change, **kwargs)

    def save_audited(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Model:
        with transaction.atomic():
            saved = form.save()
            record_access_settings_change(
                settings=saved,
                before=getattr(request, "_access_settings_before", {}),
                actor=cast(User, request.user),
                channel=Channel.WEB,
            )
        return saved


class ApprovalInline(admin.TabularInline):
    model = Approval
    extra = 0
    can_delete = False
    readonly_fields = ["approver", "approver_subject", "channel", "stage", "created_at"]


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyAdmin):
    """Read-only: requests change state only through the services (audited, locked)."""

    list_display = ["__str__", "requester", "state", "created_at", "expires_at", "is_breakglass"]
    list_filter = ["state", "is_breakglass", "project"]
    search_fields = ["reason", "requester__username", "table_name"]
    inlines = [ApprovalInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # as the request form does


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
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

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The list's Retry action needs the change permission; a notification's page stays read-only."""
        return obj is None and admin.ModelAdmin.has_change_permission(self, request)

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


class SlackRouteForm(forms.ModelForm):
    class Meta:
        model = SlackRoute
        fields = ["project", "channel", "dm_approvers", "escalation_channel"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        project = self.instance.project if self.instance.pk else data.get("project")
        if project is not None and needs_second_person([project.key], is_global=False):
            raise forms.ValidationError(
                f"{project.key} has the two-person rule on: its Slack route is read-only here."
            )
        return data


@admin.register(SlackRoute)
class SlackRouteAdmin(AuditedAdmin):
    """Where a project's requests are announced: whoever reads that channel sees who asks for what,
    and approvers are reached there. Saved through `slack_route_set` (audited); read-only while the
    project has the two-person rule on; not deleted here (an empty channel means DMs only)."""

    form = SlackRouteForm
    list_display = ["project", "channel", "dm_approvers", "escalation_channel"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["project"] if obj is not None else []

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if isinstance(obj, SlackRoute) and needs_second_person([obj.project.key], is_global=False):
            return False
        return super().has_change_permission(request, obj)

    def save_audited(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Model:
        data = form.cleaned_data
        return slack_route_set(
            project=form.instance.project if change else data["project"],
            slack_channel=data["channel"],
            dm_approvers=data["dm_approvers"],
            escalation_channel=data["escalation_channel"],
            actor=actor_for(cast(User, request.user)),
            channel=Channel.WEB,
        )


@admin.register(SlackUserLink)
class SlackUserLinkAdmin(AuditedAdmin):
    """Links are made by email match or `manage.py slack link`; here they are reviewed and removed
    (`slack_user_unlink`, audited). A link decides whom a Slack click acts as, so it is never
    edited here."""

    audited_add = False
    list_display = ["slack_user_id", "user", "verified_via", "email", "created_at"]
    readonly_fields = ["slack_user_id", "user", "verified_via", "email", "created_at"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_audited(self, request: HttpRequest, obj: SlackUserLink) -> None:
        slack_user_unlink(
            slack_user_id=obj.slack_user_id, actor=actor_for(cast(User, request.user)), channel=Channel.WEB
        )


@admin.register(SlackMessage)
class SlackMessageAdmin(ReadOnlyAdmin):
    """The posted messages, each the idempotency key of its post: changed by delivery only."""

    list_display = ["request", "destination", "channel", "ts", "posted_at"]
