from django import forms
from django.contrib import admin
from django.http import HttpRequest

from jitaccess.models import AccessRequest, Approval, ApprovalPolicy, Notification, ProjectAccessSettings
from jitaccess.policies import PolicyConditionError, check_request_condition


class ApprovalPolicyForm(forms.ModelForm):
    class Meta:
        model = ApprovalPolicy
        fields = [
            "project",
            "title",
            "condition",
            "position",
            "approver_roles",
            "approvals_required",
            "auto_approve",
            "max_duration",
            "slack_channel",
            "enabled",
        ]

    def clean_condition(self) -> str:
        condition = self.cleaned_data["condition"]
        try:
            check_request_condition(condition)
        except PolicyConditionError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return condition

    def clean_approvals_required(self) -> int:
        required = self.cleaned_data["approvals_required"]
        if required < 1:
            raise forms.ValidationError("At least one approval (use auto-approve for none).")
        return required


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(admin.ModelAdmin):
    form = ApprovalPolicyForm
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
    filter_horizontal = ["approver_roles"]


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
class AccessRequestAdmin(admin.ModelAdmin):
    """Read-only: requests change state only through the services (audited, locked)."""

    list_display = ["__str__", "requester", "state", "created_at", "expires_at", "is_breakglass"]
    list_filter = ["state", "is_breakglass", "project"]
    search_fields = ["reason", "requester__username", "table_name"]
    inlines = [ApprovalInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["request", "kind", "channel", "recipient", "destination", "state", "attempts", "sent_at"]
    list_filter = ["state", "channel", "kind"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
