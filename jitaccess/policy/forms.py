"""The approval policy form of the policy pages; it turns into one document item."""

from __future__ import annotations

from typing import Any

from django import forms

from identity.models import Role
from jitaccess.oncall import OnCallProvider
from jitaccess.policy.matching import PolicyConditionError, check_request_condition
from jitaccess.policy.services import (
    MAX_STAGES,
    STAGE_NAME_MAX_CHARS,
    OnCallRule,
    StageRule,
    check_oncall_rule,
    check_stages,
)
from masking.policy.document import MAX_INTEGER, canonical_mapping, format_duration, parse_duration
from masking.policy.review import PolicyItemForm, set_choices
from masking.services.policy import PolicyError

# The document's `oncall` keys, and the form's fields for them.
ONCALL_FORM_FIELDS = {
    "provider": "oncall_provider",
    "schedule": "oncall_schedule_id",
    "responder_auto_approve": "oncall_responder_auto_approve",
    "responder_max_duration": "oncall_responder_max_duration",
}


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
    oncall_provider = forms.ChoiceField(
        required=False,
        choices=[("", "None"), *OnCallProvider.choices],
        label="On-call provider",
        help_text="Whoever is on call for the schedule below also approves",
    )
    oncall_schedule_id = forms.CharField(
        required=False,
        max_length=100,
        label="On-call schedule ID",
        help_text="The schedule's ID in PagerDuty (e.g. PABC123) or Opsgenie",
    )
    oncall_responder_auto_approve = forms.BooleanField(
        required=False,
        label="Approve the person on call at once",
        help_text="Their own requests, up to the maximum below, with a note of their shift",
    )
    oncall_responder_max_duration = forms.CharField(
        required=False,
        label="Longest request approved at once for the person on call",
        help_text="e.g. 1h; at most the policy's max duration",
    )

    def __init__(self, *args: Any, projects: list[str], **kwargs: Any) -> None:
        oncall = (kwargs.get("initial") or {}).get("oncall")
        if oncall:  # the document's `oncall` mapping, as the form's own fields
            fields = {
                ONCALL_FORM_FIELDS[key]: value for key, value in oncall.items() if key in ONCALL_FORM_FIELDS
            }
            kwargs["initial"] = {**kwargs["initial"], **fields}
        for number, stage in enumerate((kwargs.get("initial") or {}).get("stages") or [], start=1):
            kwargs["initial"] = {  # the document's `stages`, as the form's rows
                **kwargs["initial"],
                f"stage_{number}_name": stage["name"],
                f"stage_{number}_approver_roles": stage["approver_roles"],
                f"stage_{number}_approvals_required": stage["approvals_required"],
            }
        super().__init__(*args, **kwargs)
        set_choices(self, "project", [(key, key) for key in projects])
        roles = [(name, name) for name in Role.objects.order_by("name").values_list("name", flat=True)]
        set_choices(self, "approver_roles", roles)
        for number in range(1, MAX_STAGES + 1):
            self.fields[f"stage_{number}_name"] = forms.CharField(
                required=False,
                max_length=STAGE_NAME_MAX_CHARS,
                label=f"Stage {number}: name",
                help_text=(
                    "To approve in stages, name each in the order they are asked, e.g. Data owner, then "
                    "Security; each stage's approvers are asked once the one before has approved. "
                    "No names: no stages"
                    if number == 1
                    else ""
                ),
            )
            self.fields[f"stage_{number}_approver_roles"] = forms.MultipleChoiceField(
                required=False,
                choices=roles,
                label=f"Stage {number}: approver roles",
                help_text="Empty: people with approve permission on the project",
            )
            self.fields[f"stage_{number}_approvals_required"] = forms.IntegerField(
                required=False,
                min_value=1,
                max_value=MAX_INTEGER,
                label=f"Stage {number}: approvals required",
                help_text="Empty: 1",
            )

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

    def clean_oncall_responder_max_duration(self) -> str | None:
        raw = self.cleaned_data["oncall_responder_max_duration"].strip()
        if not raw:
            return None
        try:
            return format_duration(parse_duration(raw))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean(self) -> dict[str, Any]:
        """The on-call fields together, refused as the service refuses them (naming the field)."""
        data = super().clean() or {}
        if any(name in self.errors for name in ("max_duration", "oncall_responder_max_duration")):
            return data
        limit, cap = data.get("oncall_responder_max_duration"), data.get("max_duration")
        rule = OnCallRule(
            provider=data.get("oncall_provider") or "",
            schedule_id=(data.get("oncall_schedule_id") or "").strip(),
            responder_auto_approve=bool(data.get("oncall_responder_auto_approve")),
            responder_max_duration=parse_duration(limit) if limit else None,
        )
        try:
            check_oncall_rule(rule, parse_duration(cap) if cap else None)
        except PolicyError as exc:
            self.add_error(exc.field, exc.message)
        self._clean_stages(data)
        return data

    def _clean_stages(self, data: dict[str, Any]) -> None:
        """The stage rows together, refused as the service refuses them: a row with roles or a
        quorum but no name next to its name, the rest next to the field at fault."""
        for number in range(1, MAX_STAGES + 1):
            named = (data.get(f"stage_{number}_name") or "").strip()
            if not named and (
                data.get(f"stage_{number}_approver_roles") or data.get(f"stage_{number}_approvals_required")
            ):
                self.add_error(f"stage_{number}_name", "Name this stage, or clear its roles and approvals.")
        if self.errors:
            return
        try:
            check_stages(
                [StageRule(stage["name"], (), stage["approvals_required"]) for stage in self.stages()],
                approver_roles=data.get("approver_roles") or [],
                approvals_required=data.get("approvals_required") or 1,
                auto_approve=bool(data.get("auto_approve")),
            )
        except PolicyError as exc:
            self.add_error(None if exc.field == "stages" else exc.field, f"Stages: {exc.message}")

    def stages(self) -> list[dict[str, Any]]:
        """The document's `stages`: the rows with a name, in order."""
        data = self.cleaned_data
        return [
            {
                "name": data[f"stage_{number}_name"].strip(),
                "approver_roles": sorted(data[f"stage_{number}_approver_roles"]),
                "approvals_required": data[f"stage_{number}_approvals_required"] or 1,
            }
            for number in range(1, MAX_STAGES + 1)
            if (data.get(f"stage_{number}_name") or "").strip()
        ]

    def oncall(self) -> dict[str, Any] | None:
        """The document's `oncall` mapping (None: no schedule)."""
        data = self.cleaned_data
        if not data["oncall_schedule_id"].strip():
            return None
        return canonical_mapping(
            {
                "provider": data["oncall_provider"],
                "schedule": data["oncall_schedule_id"].strip(),
                "responder_auto_approve": data["oncall_responder_auto_approve"],
                "responder_max_duration": data["oncall_responder_max_duration"],
            }
        )

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
            "oncall": self.oncall(),
            **({"stages": stages} if (stages := self.stages()) else {}),
        }
