"""Forms of the policy pages. Each turns into one document item (`item()`); checking the item
against the rest of the policy is the review's job (`masking.policy.review`)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django import forms
from django.contrib.auth.models import Group
from django.utils import timezone
from veil_sdk.algorithms import ALGORITHM_TYPES, AlgorithmError
from veil_sdk.algorithms import validate as validate_algorithm

from identity.models import Role, ServiceAccount, User
from masking.decisions.cel import ConditionError, check_condition
from masking.models import SemanticType, UnclassifiedAction
from masking.policy.document import MAX_SOURCE_CHARS, canonical_mapping, format_timestamp
from masking.policy.review import PolicyItemForm, set_choices
from shared import strict_json


class ConditionField(forms.CharField):
    """A CEL condition over `resource`, checked like the services check it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "code"}))
        super().__init__(**kwargs)

    def validate(self, value: str) -> None:
        super().validate(value)
        try:
            check_condition(value or "")
        except ConditionError as exc:
            raise forms.ValidationError(str(exc)) from exc


class SemanticTypeForm(PolicyItemForm):
    key = forms.SlugField(max_length=64, help_text="Stable id used by rules and columns")
    title = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    algorithm = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "code"}),
        help_text='JSON, e.g. {"type": "show_last", "n": 4}. Types: ' + ", ".join(ALGORITHM_TYPES),
    )

    def clean_algorithm(self) -> dict[str, Any]:
        try:
            algorithm = strict_json.loads(self.cleaned_data["algorithm"])
        except ValueError as exc:
            raise forms.ValidationError(f"Not JSON: {exc}") from exc
        try:
            validate_algorithm(algorithm)
        except AlgorithmError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return canonical_mapping(algorithm)

    def item(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "key": data["key"],
            "title": data["title"].strip(),
            "description": data["description"].strip(),
            "algorithm": data["algorithm"],
        }

    @staticmethod
    def initial_for(item: dict[str, Any]) -> dict[str, Any]:
        return {**item, "algorithm": json.dumps(item["algorithm"])}


class RuleForm(PolicyItemForm):
    title = forms.CharField(max_length=200, help_text="Names the rule in diffs and policy files")
    condition = ConditionField(help_text='CEL over resource, e.g. resource.column_name == "email"')
    semantic_type = forms.ChoiceField(error_messages={"required": "Choose a semantic type."})
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        types = SemanticType.objects.order_by("key")
        # A blank first choice: a rule must name its type on purpose, never get the first one listed.
        set_choices(
            self,
            "semantic_type",
            [("", "— choose a semantic type —")] + [(st.key, f"{st.title} ({st.key})") for st in types],
        )

    def item(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "title": data["title"].strip(),
            "condition": data["condition"].strip(),
            "semantic_type": data["semantic_type"],
            "enabled": data["enabled"],
        }


def _names(queryset: Any, field: str) -> list[tuple[str, str]]:
    return [(name, name) for name in queryset.order_by(field).values_list(field, flat=True)]


class ExemptionForm(PolicyItemForm):
    project = forms.ChoiceField(help_text="The exemption covers columns of this project only")
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), help_text="Why; it also names the exemption in files"
    )
    condition = ConditionField(required=False, help_text="Scope within the project; empty means every column")
    users = forms.MultipleChoiceField(required=False)
    groups = forms.MultipleChoiceField(required=False, help_text="IdP groups")
    roles = forms.MultipleChoiceField(required=False)
    service_accounts = forms.MultipleChoiceField(required=False)
    expires_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: until revoked",
    )

    def __init__(self, *args: Any, projects: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_choices(self, "project", [(key, key) for key in projects])
        set_choices(self, "users", _names(User.objects.filter(is_active=True), "username"))
        set_choices(self, "groups", _names(Group.objects.all(), "name"))
        set_choices(self, "roles", _names(Role.objects.all(), "name"))
        set_choices(self, "service_accounts", _names(ServiceAccount.objects.filter(is_active=True), "name"))
        zone = timezone.get_current_timezone_name()
        self.fields["expires_at"].label = f"Expires at ({zone})"
        self.fields["expires_at"].help_text = f"Date and time in {zone}; empty: until revoked"

    def clean_expires_at(self) -> datetime | None:
        """An expiry already past would unmask nothing: the plan would drop the exemption with a
        warning, so say it here, next to the field."""
        expires_at: datetime | None = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            shown = timezone.localtime(expires_at).strftime("%Y-%m-%d %H:%M")
            raise forms.ValidationError(
                f"Must be in the future ({shown} has passed); leave it empty for no expiry.", code="past"
            )
        return expires_at

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not any(data.get(name) for name in ("users", "groups", "roles", "service_accounts")):
            raise forms.ValidationError("Name at least one user, group, role or service account.")
        return data

    def item(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "project": data["project"],
            "reason": data["reason"].strip(),
            "condition": data["condition"].strip(),
            "users": sorted(data["users"]),
            "groups": sorted(data["groups"]),
            "roles": sorted(data["roles"]),
            "service_accounts": sorted(data["service_accounts"]),
            "expires_at": format_timestamp(data["expires_at"]) if data["expires_at"] else None,
        }


class PolicySourceForm(forms.Form):
    source = forms.CharField(
        required=False,
        max_length=MAX_SOURCE_CHARS,
        widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "code"}),
        help_text="A policy document as `manage.py policy export` writes it",
    )
    upload = forms.FileField(required=False, help_text="…or a file")
    source_format = forms.ChoiceField(
        choices=[("veil", "Veil YAML"), ("bytebase", "Bytebase export (semantic types and masking rules)")],
        initial="veil",
        label="Format",
    )

    def clean_upload(self) -> str | None:
        """The chosen file's text, whole or refused: a file cut short or with bytes replaced could
        still parse, as a policy missing its last items."""
        upload = self.cleaned_data.get("upload")
        if upload is None:
            return None
        if upload.size > MAX_SOURCE_CHARS:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; a policy file may be at most "
                f"{MAX_SOURCE_CHARS:,} bytes (the policy API takes the same)."
            )
        raw = upload.read()
        try:
            text: str = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(
                f"The file is not UTF-8 text (byte {exc.start + 1} cannot be read); save it as UTF-8."
            ) from exc
        return text

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("upload") is not None:
            data["source"] = data["upload"]
        if not (data.get("source") or "").strip() and not self.has_error("upload"):
            raise forms.ValidationError("Paste a policy document or choose a file.")
        return data


class ProjectSettingsForm(forms.Form):
    """Per project the person administers: the two-person rule (a checkbox named after the project)
    and how its unclassified columns are answered (`<key>-unclassified`, and per-environment
    overrides written `prod=mask, staging=unmask` in `<key>-unclassified_environments`)."""

    def __init__(
        self,
        *args: Any,
        projects: list[str],
        live: dict[str, dict[str, Any]],
        veil_default: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.projects = projects
        for key in projects:
            item = live.get(key, {})
            self.fields[key] = forms.BooleanField(
                required=False,
                initial=item.get("two_person_rule", False),
                label=f"{key}: policy changes need a second person",
            )
            self.fields[f"{key}-unclassified"] = forms.ChoiceField(
                required=False,
                initial=item.get("unclassified", ""),
                label=f"{key}: columns nobody classified",
                choices=[("", f"Veil's default ({veil_default})"), *UnclassifiedAction.choices],
            )
            overrides = item.get("unclassified_environments", {})
            self.fields[f"{key}-unclassified_environments"] = forms.CharField(
                required=False,
                initial=", ".join(f"{env}={action}" for env, action in overrides.items()),
                label=f"{key}: per environment",
                help_text="e.g. prod=mask, staging=unmask (overrides the choice above there)",
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for key in self.projects:
            name = f"{key}-unclassified_environments"
            try:
                cleaned[name] = parse_environment_actions(cleaned.get(name) or "")
            except ValueError as exc:
                self.add_error(name, str(exc))
        return cleaned

    def items(self) -> dict[str, dict[str, Any]]:
        """Each administered project's settings as a `projects` document item."""
        data = self.cleaned_data
        return {
            key: {
                "key": key,
                "two_person_rule": bool(data.get(key)),
                "unclassified": data.get(f"{key}-unclassified") or "",
                "unclassified_environments": data.get(f"{key}-unclassified_environments") or {},
            }
            for key in self.projects
        }


def parse_environment_actions(text: str) -> dict[str, str]:
    """`prod=mask, staging=unmask` -> {"prod": "mask", "staging": "unmask"}; ValueError naming the part."""
    found: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in re.split(r"[,\s]+", text))):
        environment, _, action = part.partition("=")
        if not re.fullmatch(r"[-a-zA-Z0-9_]{1,64}", environment) or action not in UnclassifiedAction.values:
            raise ValueError(f"{part!r}: write environment=mask or environment=unmask")
        if environment in found:
            raise ValueError(f"{environment} is named twice")
        found[environment] = action
    return dict(sorted(found.items()))


class DecisionNoteForm(forms.Form):
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
