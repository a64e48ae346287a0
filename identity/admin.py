"""People, groups, service accounts and tokens on the admin site: each write through an audited
service (`identity.services`), privileges by superusers only, identity from the IdP read-only."""

from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from audit.admin import AuditedAdmin, ReadOnlyAdmin
from audit.models import Channel
from identity.models import ApiToken, ServiceAccount, User
from identity.services import (
    USER_PRIVILEGE_FIELDS,
    USER_PROFILE_FIELDS,
    group_save,
    service_account_update,
    token_revoke,
    user_create,
    user_password_set,
    user_update,
)

# Facts and what the IdP states: never edited by hand (a re-pointed email that stays "verified"
# lets someone else approve in Slack as that person).
USER_READ_ONLY = ["username", "email", "email_verified", "oidc_subject", "last_login", "date_joined"]


@admin.register(User)
class VeilUserAdmin(AuditedAdmin, UserAdmin):
    """People: profile and whether they may sign in by anyone who may change users; privileges
    (staff, superuser, groups, permissions) and passwords by superusers only; a superuser's record
    by superusers only. Every change goes through `user_update` and is in the audit log. People
    are deactivated, never deleted: the record of who approved what stays."""

    list_display = ["username", "email", "display_name", "oidc_subject", "is_staff", "is_active"]
    search_fields = ["username", "email", "display_name", "oidc_subject"]
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "display_name")}),
        ("Identity provider", {"fields": ("email", "email_verified", "oidc_subject")}),
        ("Permissions", {"fields": ("is_active", *USER_PRIVILEGE_FIELDS)}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []  # the add form: username and password only
        privileged = [] if request.user.is_superuser else list(USER_PRIVILEGE_FIELDS)
        return USER_READ_ONLY + privileged

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if isinstance(obj, User) and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def save_audited(self, request: HttpRequest, form: ModelForm, change: bool) -> Model:
        actor = cast(User, request.user)
        if not change:
            usable = form.cleaned_data.get("set_usable_password", True)
            return user_create(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"] if usable else None,
                created_by=actor,
                channel=Channel.WEB,
            )
        editable = set(USER_PROFILE_FIELDS) | set(USER_PRIVILEGE_FIELDS)
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in editable}
        return user_update(user=form.instance, changes=changes, changed_by=actor, channel=Channel.WEB)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        """Superusers only (whoever sets a password can sign in as that person), through
        `user_password_set`. Django's view shows the form and its errors; it saves nothing here."""
        if not request.user.is_superuser:
            raise PermissionDenied("Only a superuser sets someone's password.")
        user = self.get_object(request, unquote(id))
        if request.method != "POST" or user is None:
            return super().user_change_password(request, id, form_url)
        form = self.change_password_form(user, request.POST)
        usable = form.is_valid() and form.cleaned_data["set_usable_password"]
        if not form.is_valid() or not (usable or "unset-password" in request.POST):
            return super().user_change_password(request, id, form_url)
        user = user_password_set(
            user=user,
            password=form.cleaned_data["password1"] if usable else None,
            changed_by=cast(User, request.user),
            channel=Channel.WEB,
        )
        update_session_auth_hash(request, user)
        messages.success(request, "Password changed." if usable else "Password sign-in disabled.")
        return HttpResponseRedirect(reverse("admin:identity_user_change", args=[user.pk]))


admin.site.unregister(Group)


@admin.register(Group)
class VeilGroupAdmin(AuditedAdmin, GroupAdmin):
    """IdP groups: members come from the IdP at each sign-in. A group's permissions hold in every
    project for every member, so only superusers add groups or change them (`group_save`,
    audited); groups are not deleted here (a project's permissions and roles name them)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser) and super().has_change_permission(request, obj)

    def save_audited(self, request: HttpRequest, form: ModelForm, change: bool) -> Model:
        return group_save(
            group=form.instance if change else None,
            name=form.cleaned_data["name"],
            permissions=form.cleaned_data["permissions"],
            changed_by=cast(User, request.user),
            channel=Channel.WEB,
        )


# `Role` is registered by masking/admin.py: its membership is policy, saved through
# `masking.services.roles` (audited, versioned, read-only under the two-person rule).


class ApiTokenInline(admin.TabularInline):
    """Tokens are listed, never edited: create them with `manage.py token create` (shown once)."""

    model = ApiToken
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "name",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ServiceAccount)
class ServiceAccountAdmin(AuditedAdmin):
    """Accounts are added, deactivated and reactivated on the Service accounts page, which records
    each change in the audit log; here only the description and owner are edited."""

    audited_add = False
    list_display = ["name", "owner", "is_active", "created_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["name", "is_active", "created_at"]
    inlines = [ApiTokenInline]

    def save_audited(self, request: HttpRequest, form: ModelForm, change: bool) -> Model:
        return service_account_update(
            account=form.instance,
            description=form.cleaned_data["description"],
            owner=form.cleaned_data["owner"],
            changed_by=cast(User, request.user),
            channel=Channel.WEB,
        )


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Read-only but for the Revoke action (audited); tokens are created where they are shown once."""

    list_display = ["service_account", "name", "prefix", "scopes", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    fields = readonly_fields = (
        "service_account",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "created_by",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )
    actions = ["revoke"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The list's Revoke action needs the change permission; a token's page stays read-only."""
        return obj is None and admin.ModelAdmin.has_change_permission(self, request)

    # Without `permissions` an action is offered to anyone who may only view the list.
    @admin.action(permissions=["change"], description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset) -> None:  # type: ignore[no-untyped-def]
        for token in queryset:
            token_revoke(token=token, revoked_by=request.user, channel=Channel.WEB)  # type: ignore[arg-type]
        messages.success(request, f"Revoked {queryset.count()} token(s).")
