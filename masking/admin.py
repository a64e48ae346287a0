"""The Django admin site for projects, the catalog and the policy.

Policy saves go through the audited services, so each becomes a policy version. Projects are added
and renamed through `masking.services.projects`; who may do what in a project (django-guardian's
object permissions pages) is changed by superusers only, through the audited
`object_permissions_set`, and not while the project has the two-person rule on. The catalog is
read-only here (pushes and syncs write it) but for a column's classification level, stated
through the same service as on the catalog page. While a project
has the two-person rule on, its policy is read-only here: changes then go through the policy pages,
which hold them for a second person (global rules and semantic types are read-only while any
project has the rule on).
"""

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from guardian.admin import GuardedModelAdminMixin
from guardian.forms import BaseObjectPermissionsForm
from veil_sdk.algorithms import AlgorithmError
from veil_sdk.algorithms import validate as validate_algorithm

from audit.admin import AuditedAdmin, ReadOnlyAdmin
from audit.models import Channel
from audit.services import Target
from identity.models import Role, User
from identity.services import actor_for, object_permissions_set
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
from masking.policy.access import may_administer, needs_second_person
from masking.policy.forms import ConditionField
from masking.services.catalog import column_classify
from masking.services.policy import (
    exemption_create,
    exemption_revoke,
    exemption_update,
    rule_delete,
    rule_save,
    semantic_type_delete,
    semantic_type_save,
)
from masking.services.projects import project_create, project_update
from masking.services.roles import role_delete, role_save


class GuardedPolicyAdmin(AuditedAdmin):
    """Read-only while the two-person rule is in force for what the object touches (global
    objects: any project's rule, as for a change made on the policy pages)."""

    def _guarded(self, obj: object = None) -> bool:
        return needs_second_person((), is_global=True)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not self._guarded() and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return not self._guarded(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return not self._guarded(obj) and super().has_delete_permission(request, obj)


@admin.register(Project)
class ProjectAdmin(GuardedModelAdminMixin, AuditedAdmin):  # type: ignore[misc]  # guardian's template name
    """Projects are added and renamed here (the key is fixed once it exists) and never deleted.
    Object permissions (request, approve, administer policy, audit) are managed per project on
    django-guardian's pages: by superusers only, each change through `object_permissions_set`
    (audited), and not while the project has the two-person rule on (turning the rule off needs
    the second person, so one person cannot hand out approvals alone)."""

    list_display = ["key", "title", "inference_guard"]
    search_fields = ["key", "title"]

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        # A new project starts with the guard refusing; it is relaxed on the project's own page.
        return ["key"] if obj is not None else ["inference_guard"]

    def save_audited(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Model:
        data, actor = form.cleaned_data, actor_for(cast(User, request.user))
        if change:
            return project_update(
                project=form.instance,
                title=data["title"],
                description=data["description"],
                inference_guard=data["inference_guard"],
                actor=actor,
                channel=Channel.WEB,
            )
        return project_create(
            key=data["key"],
            title=data["title"],
            description=data["description"],
            actor=actor,
            channel=Channel.WEB,
        )

    def obj_perms_manage_user_view(self, request: HttpRequest, object_pk: str, user_id: str) -> HttpResponse:
        self._refuse_unless_permissions_editable(request, object_pk)
        return super().obj_perms_manage_user_view(request, object_pk, user_id)

    def obj_perms_manage_group_view(
        self, request: HttpRequest, object_pk: str, group_id: str
    ) -> HttpResponse:
        self._refuse_unless_permissions_editable(request, object_pk)
        return super().obj_perms_manage_group_view(request, object_pk, group_id)

    def _refuse_unless_permissions_editable(self, request: HttpRequest, object_pk: str) -> None:
        if request.method != "POST":
            return
        if not request.user.is_superuser:
            raise PermissionDenied("Only a superuser changes who may do what in a project.")
        project = get_object_or_404(Project, pk=unquote(object_pk))
        if needs_second_person([project.key], is_global=False):
            raise PermissionDenied(
                f"{project.key} has the two-person rule on: its permissions are read-only here."
            )

    def get_obj_perms_manage_user_form(self, request: HttpRequest) -> type[forms.Form]:
        return _audited_permissions_form(super().get_obj_perms_manage_user_form(request), request)

    def get_obj_perms_manage_group_form(self, request: HttpRequest) -> type[forms.Form]:
        return _audited_permissions_form(super().get_obj_perms_manage_group_form(request), request)


def _audited_permissions_form(base: type[forms.Form], request: HttpRequest) -> type[forms.Form]:
    """django-guardian's permissions form for a user or group, saving through the audited service."""

    class AuditedPermissionsForm(cast(type[BaseObjectPermissionsForm], base)):  # type: ignore[misc]
        def save_obj_perms(self) -> None:
            project = cast(Project, self.obj)
            object_permissions_set(
                obj=project,
                holder=getattr(self, "user", None) or self.group,
                codenames=self.cleaned_data[self.get_obj_perms_field_name()],
                target=Target("project", project.key, str(project)),
                project=project.key,
                changed_by=cast(User, request.user),
                channel=Channel.WEB,
            )

    return AuditedPermissionsForm


class CatalogAdmin(ReadOnlyAdmin):
    """The catalog as catalog pushes and syncs write it: read-only here. Edits made here would
    neither reach decisions (the decision epoch would not move) nor survive the next push, which
    states instances' environments, databases' projects and the columns."""


@admin.register(Instance)
class InstanceAdmin(CatalogAdmin):
    list_display = ["key", "title", "engine", "environment"]
    list_filter = ["engine", "environment"]
    search_fields = ["key", "title"]


@admin.register(Database)
class DatabaseAdmin(CatalogAdmin):
    list_display = ["name", "instance", "project"]
    list_filter = ["project", "instance__environment"]
    search_fields = ["name", "instance__key"]


@admin.register(Schema)
class SchemaAdmin(CatalogAdmin):
    list_display = ["name", "database"]
    search_fields = ["name", "database__name"]


@admin.register(Table)
class TableAdmin(CatalogAdmin):
    list_display = ["name", "schema"]
    search_fields = ["name"]


class ColumnClassificationForm(forms.ModelForm):
    class Meta:
        model = Column
        fields = ["classification_level"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A level is stated, never taken back to "unclassified" (as on the catalog page). Someone
        # who may not classify the column sees it read-only, without the field.
        if "classification_level" in self.fields:
            self.fields["classification_level"].required = True


@admin.register(Column)
class ColumnAdmin(AuditedAdmin):
    """Read-only but for the classification level, which a policy administrator of the column's
    project may state here as on the catalog page: through `column_classify`, so it is audited
    and decisions follow it at once."""

    form = ColumnClassificationForm
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
    fields = [
        "table",
        "name",
        "data_type",
        "classification_level",
        "suggested_category",
        "semantic_type",
        "tags",
    ]
    readonly_fields = ["table", "name", "data_type", "suggested_category", "semantic_type", "tags"]
    audited_add = False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        if not isinstance(obj, Column):
            return super().has_change_permission(request, obj)
        project = obj.table.schema.database.project.key
        return super().has_change_permission(request, obj) and may_administer(
            cast(User, request.user), [project], is_global=False
        )

    def save_audited(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Model:
        column_classify(
            column=form.instance,
            level=form.cleaned_data["classification_level"],
            actor=actor_for(cast(User, request.user)),
            channel=Channel.WEB,
            detail={"source": "admin site"},
        )
        return form.instance


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
        field_classes = {"condition": ConditionField}

    def clean_title(self) -> str:
        title = self.cleaned_data["title"].strip()
        if MaskingRule.objects.filter(title=title).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("Another rule has this title; titles identify rules in policy files.")
        return title


@admin.register(MaskingRule)
class MaskingRuleAdmin(GuardedPolicyAdmin):
    """Saves go through `rule_save`, so they are audited and reach every decision at once."""

    form = MaskingRuleForm
    list_display = ["position", "title", "condition", "semantic_type", "enabled"]
    list_display_links = ["title"]
    ordering = ["position", "id"]

    def save_audited(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Model:
        obj = form.instance
        return rule_save(
            rule=obj if change else None,
            title=obj.title,
            condition=obj.condition,
            semantic_type=obj.semantic_type,
            position=obj.position,
            enabled=obj.enabled,
            actor=actor_for(request.user),  # type: ignore[arg-type]
            channel=Channel.WEB,
        )

    def delete_audited(self, request: HttpRequest, obj: MaskingRule) -> None:
        rule_delete(rule=obj, actor=actor_for(request.user), channel=Channel.WEB)  # type: ignore[arg-type]


class ExemptionForm(forms.ModelForm):
    """Checks what the services would refuse, so the admin shows it next to the field."""

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
        field_classes = {"condition": ConditionField}

    def clean(self) -> dict:
        data = super().clean() or {}
        if not any(data.get(name) for name in ("users", "groups", "roles", "service_accounts")):
            raise forms.ValidationError("Name at least one user, group, role or service account.")
        expires_at = data.get("expires_at")
        if not self.instance.pk and expires_at is not None and expires_at <= timezone.now():
            self.add_error("expires_at", "Must be in the future.")
        project, reason = data.get("project"), (data.get("reason") or "").strip()
        clash = Exemption.objects.filter(
            kind=ExemptionKind.EXEMPTION, project=project, revoked_at__isnull=True, reason=reason
        ).exclude(pk=self.instance.pk)
        if project is not None and clash.exists():
            self.add_error("reason", "Another exemption of this project has this reason; make it specific.")
        return data


@admin.register(Exemption)
class ExemptionAdmin(GuardedPolicyAdmin):
    """Standing exemptions are edited here; grants are created by approved requests and only
    revoked here. Saves go through `exemption_create` / `exemption_update` (audited, versioned)."""

    form = ExemptionForm
    list_display = ["id", "kind", "project", "reason", "principal_key", "expires_at", "revoked_at"]
    list_filter = ["kind", "project"]
    filter_horizontal = ["users", "groups", "roles", "service_accounts"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).select_related("project")

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return ["project"] if obj is not None else []  # an exemption stays in its project

    def _guarded(self, obj: object = None) -> bool:
        if isinstance(obj, Exemption):
            return needs_second_person([obj.project.key], is_global=False)
        return needs_second_person((), is_global=True)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        if isinstance(obj, Exemption) and (obj.kind == ExemptionKind.GRANT or obj.revoked_at is not None):
            return False
        return super().has_change_permission(request, obj)

    # No `delete_audited`: exemptions are revoked, not deleted, so the record of who was exempt stays.

    def save_audited(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Model:
        data = form.cleaned_data
        members = {name: data[name] for name in ("users", "groups", "roles", "service_accounts")}
        actor = actor_for(request.user)  # type: ignore[arg-type]
        if change:
            return exemption_update(
                exemption=form.instance,
                reason=data["reason"],
                condition=data["condition"],
                expires_at=data["expires_at"],
                actor=actor,
                channel=Channel.WEB,
                **members,
            )
        return exemption_create(
            project=data["project"],
            reason=data["reason"],
            condition=data["condition"],
            expires_at=data["expires_at"],
            created_by=request.user,  # type: ignore[arg-type]
            actor=actor,
            channel=Channel.WEB,
            **members,
        )

    # Without `permissions` an action is offered to anyone who may only view the list, and it would
    # go around the two-person rule that `has_change_permission` enforces.
    @admin.action(permissions=["change"], description="Revoke now")
    def revoke(self, request: HttpRequest, queryset) -> None:  # type: ignore[no-untyped-def]
        """Standing exemptions only. A grant is ended on its request's page (Revoke), which also
        ends the request, its extensions and tells the requester; revoking the bare grant here
        would leave the request saying it is approved and in force."""
        grants = [e.request_ref or f"grant {e.pk}" for e in queryset if e.kind == ExemptionKind.GRANT]
        for exemption in queryset.exclude(kind=ExemptionKind.GRANT):
            exemption_revoke(exemption=exemption, actor=actor_for(request.user), channel=Channel.WEB)  # type: ignore[arg-type]
        if grants:
            self.message_user(
                request,
                f"Not revoked here: {', '.join(grants)}. Revoke a grant on its request's page, so the "
                "request ends with it and the requester is told.",
                level=messages.WARNING,
            )


@admin.register(Role)
class RoleAdmin(GuardedPolicyAdmin):
    """Whom a role holds decides whom exemptions cover and who approves: saves and deletes go
    through `role_save` / `role_delete` (audited, versioned), as on the policy pages. The name is
    the role's key in policy files, so it is fixed once the role exists."""

    list_display = ["name", "description"]
    search_fields = ["name"]
    filter_horizontal = ["users", "groups", "service_accounts"]

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return ["name"] if obj is not None else []

    def save_audited(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Model:
        data = form.cleaned_data
        return role_save(
            name=form.instance.name,
            description=data.get("description", ""),
            users=data["users"],
            groups=data["groups"],
            service_accounts=data["service_accounts"],
            actor=actor_for(request.user),  # type: ignore[arg-type]
            channel=Channel.WEB,
        )

    def delete_audited(self, request: HttpRequest, obj: Role) -> None:
        role_delete(role=obj, actor=actor_for(request.user), channel=Channel.WEB)  # type: ignore[arg-type]


@admin.register(SemanticType)
class SemanticTypeAdmin(GuardedPolicyAdmin):
    """Saves go through `semantic_type_save` (validated, audited, published)."""

    form = SemanticTypeForm
    list_display = ["key", "title", "algorithm"]
    search_fields = ["key", "title"]

    def save_audited(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Model:
        obj = form.instance
        return semantic_type_save(
            key=obj.key,
            title=obj.title,
            description=obj.description,
            algorithm=obj.algorithm,
            actor=actor_for(request.user),  # type: ignore[arg-type]
            channel=Channel.WEB,
        )

    def delete_audited(self, request: HttpRequest, obj: SemanticType) -> None:
        semantic_type_delete(semantic_type=obj, actor=actor_for(request.user), channel=Channel.WEB)  # type: ignore[arg-type]
