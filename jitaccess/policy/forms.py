"""The approval policy form of the policy pages; it turns into one document item."""

from __future__ import annotations

from typing import Any

from django import forms

from identity.models import Role
from jitaccess.policy.matching import PolicyConditionError, check_request_condition
from masking.policy.document import format_duration, parse_duration
from masking.policy.review import PolicyItemForm, set_choices


class ApprovalPolicyForm(PolicyItemForm):
    project = forms.ChoiceField()
    title = forms.CharField(max_length=200, help_text="Names the policy within its project")
    condition = forms.CharField(
        initial="true",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "code"}),
        help_text='CEL over request, e.g. request.environment_id == "prod" && request.duration_hours <= 4',
    )
    approver_roles = forms.MultipleChoiceField(
        required=False, help_text="Empty: people with approve permission on the project"
    )
    approvals_required = forms.IntegerField(min_value=1, initial=1)
    auto_approve = forms.BooleanField(required=False, help_text="Grant at once, no approver needed")
    max_duration = forms.CharField(required=False, help_text="e.g. 4h or 2d; empty: the project's cap")
    slack_channel = forms.CharField(required=False, max_length=100, help_text="Channel id or #name")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, projects: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_choices(self, "project", [(key, key) for key in projects])
        roles = Role.objects.order_by("name").values_list("name", flat=True)
        set_choices(self, "approver_roles", [(name, name) for name in roles])

    def clean_condition(self) -> str:
        condition = self.cleaned_data["condition"].strip() or "true"
        try:
            check_request_condition(condition)
        except PolicyConditionError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return condition

    def clean_max_duration(self) -> str | None:
        raw = self.cleaned_data["max_duration"].strip()
        if not raw:
            return None
        try:
            return format_duration(parse_duration(raw))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def item(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "project": data["project"],
            "title": data["title"].strip(),
            "condition": data["condition"],
            "approver_roles": sorted(data["approver_roles"]),
            "approvals_required": data["approvals_required"],
            "auto_approve": data["auto_approve"],
            "max_duration": data["max_duration"],
            "slack_channel": data["slack_channel"].strip(),
            "enabled": data["enabled"],
        }
