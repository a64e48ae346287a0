from django import forms
from django.contrib import admin
from django.http import HttpRequest
from guardian.admin import GuardedModelAdmin
from veil_sdk.algorithms import AlgorithmError
from veil_sdk.algorithms import validate as validate_algorithm

from audit.models import Channel
from identity.services import actor_for
from masking.cel import ConditionError, check_condition
from masking.models import (
    Column,
    Database,
    Exemption,
    ExemptionKind,
    Instance,
    MaskingRule,
    Project,
    Schema,
    SemanticType,
    Table,
)
from masking.services.policy import (
    exemption_record_admin_change,
    exemption_revoke,
    rule_delete,
    rule_save,
    semantic_type_save,
)


@admin.register(Project)
class ProjectAdmin(GuardedModelAdmin):
    """Object permissions (request, approve, administer policy, audit) are managed per project here."""

    list_display = ["key", "title"]
    search_fields = ["key", "title"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["key", "title", "engine", "environment"]
    list_filter = ["engine", "environment"]
    search_fields = ["key", "title"]


@admin.register(Database)
class DatabaseAdmin(admin.ModelAdmin):
    list_display = ["name", "instance", "project"]
    list_filter = ["project", "instance__environment"]
    search_fields = ["name", "instance__key"]


@admin.register(Schema)
class SchemaAdmin(admin.ModelAdmin):
    list_display = ["name", "database"]
    search_fields = ["name", "database__name"]


@admin.register(Table)
class TableAdmin(admin.ModelAdmin):
    list_display = ["name", "schema"]
    search_fields = ["name"]


@admin.register(Column)
class ColumnAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "table",
        "data_type",
        "classification_level",
        "suggested_category",
        "semantic_type",
    ]
    list_filter = [
        "classification_level",
        "suggested_category",
        "table__schema__database__instance__environment",
    ]
    search_fields = ["name", "table__name"]
    raw_id_fields = ["table"]


class SemanticTypeForm(forms.ModelForm):
    class Meta:
        model = SemanticType
        fields = ["key", "title", "description", "algorithm"]

    def clean_algorithm(self) -> dict:
        algorithm = self.cleaned_data["algorithm"]
        try:
            validate_algorithm(algorithm)
        except AlgorithmError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return algorithm


class MaskingRuleForm(forms.ModelForm):
    class Meta:
        model = MaskingRule
        fields = ["title", "condition", "semantic_type", "position", "enabled"]

    def clean_condition(self) -> str:
        condition = self.cleaned_data["condition"]
        try:
            check_condition(condition)
        except ConditionError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return condition


@admin.register(MaskingRule)
class MaskingRuleAdmin(admin.ModelAdmin):
    """Saves go through `rule_save`, so they are audited and reach every decision at once."""

    form = MaskingRuleForm
    list_display = ["position", "title", "condition", "semantic_type", "enabled"]
    list_display_links = ["title"]
    ordering = ["position", "id"]

    def save_model(self, request: HttpRequest, obj: MaskingRule, form: forms.ModelForm, change: bool) -> None:
        saved = rule_save(
            rule=obj if change else None,
            title=obj.title,
            condition=obj.condition,
            semantic_type=obj.semantic_type,
            position=obj.position,
            enabled=obj.enabled,
            actor=actor_for(request.user),  # type: ignore[arg-type]
            channel=Channel.WEB,
        )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: MaskingRule) -> None:
        rule_delete(rule=obj, actor=actor_for(request.user), channel=Channel.WEB)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset) -> None:  # type: ignore[no-untyped-def]
        for rule in queryset:
            self.delete_model(request, rule)


class ExemptionForm(forms.ModelForm):
    class Meta:
        model = Exemption
        fields = [
            "project",
            "condition",
            "reason",
            "users",
            "groups",
            "roles",
            "service_accounts",
            "expires_at",
        ]

    def clean_condition(self) -> str:
        condition = self.cleaned_data["condition"]
        try:
            check_condition(condition)
        except ConditionError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return condition


@admin.register(Exemption)
class ExemptionAdmin(admin.ModelAdmin):
    """Standing exemptions are edited here; grants are created by approved requests and only
    revoked here. Every save is audited and published to the decision path."""

    form = ExemptionForm
    list_display = ["id", "kind", "project", "reason", "principal_key", "expires_at", "revoked_at"]
    list_filter = ["kind", "project"]
    filter_horizontal = ["users", "groups", "roles", "service_accounts"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).select_related("project")

    def has_change_permission(self, request: HttpRequest, obj: Exemption | None = None) -> bool:
        if obj is not None and obj.kind == ExemptionKind.GRANT:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Exemption | None = None) -> bool:
        return False  # revoke instead: the record of who was exempt stays

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets, change: bool) -> None:  # type: ignore[no-untyped-def]
        super().save_related(request, form, formsets, change)
        exemption_record_admin_change(
            exemption=form.instance,
            created=not change,
            actor=actor_for(request.user),
            channel=Channel.WEB,  # type: ignore[arg-type]
        )

    @admin.action(description="Revoke now")
    def revoke(self, request: HttpRequest, queryset) -> None:  # type: ignore[no-untyped-def]
        for exemption in queryset:
            exemption_revoke(exemption=exemption, actor=actor_for(request.user), channel=Channel.WEB)  # type: ignore[arg-type]


@admin.register(SemanticType)
class SemanticTypeAdmin(admin.ModelAdmin):
    """Saves go through `semantic_type_save` (validated, audited, published)."""

    form = SemanticTypeForm
    list_display = ["key", "title", "algorithm"]
    search_fields = ["key", "title"]

    def save_model(
        self, request: HttpRequest, obj: SemanticType, form: forms.ModelForm, change: bool
    ) -> None:
        saved = semantic_type_save(
            key=obj.key,
            title=obj.title,
            description=obj.description,
            algorithm=obj.algorithm,
            actor=actor_for(request.user),  # type: ignore[arg-type]
            channel=Channel.WEB,
        )
        obj.pk = saved.pk
