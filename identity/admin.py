from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from audit.models import Channel
from identity.models import ApiToken, ServiceAccount, User
from identity.services import service_account_update, token_revoke


@admin.register(User)
class VeilUserAdmin(UserAdmin):
    list_display = ["username", "email", "display_name", "oidc_subject", "is_staff", "is_active"]
    search_fields = ["username", "email", "display_name", "oidc_subject"]
    fieldsets = (
        *(UserAdmin.fieldsets or ()),  # django-stubs declares it Optional; Django sets it
        ("Identity provider", {"fields": ("oidc_subject", "email_verified", "display_name")}),
    )
    readonly_fields = ["oidc_subject", "email_verified"]


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
class ServiceAccountAdmin(admin.ModelAdmin):
    """Accounts are added, deactivated and reactivated on the Service accounts page, which records
    each change in the audit log; here only the description and owner are edited."""

    list_display = ["name", "owner", "is_active", "created_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["name", "is_active", "created_at"]
    inlines = [ApiTokenInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ServiceAccount, form: Any, change: bool) -> None:
        service_account_update(
            account=obj,
            description=form.cleaned_data["description"],
            owner=form.cleaned_data["owner"],
            changed_by=request.user,  # type: ignore[arg-type]
            channel=Channel.WEB,
        )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # Without `permissions` an action is offered to anyone who may only view the list.
    @admin.action(permissions=["change"], description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset) -> None:  # type: ignore[no-untyped-def]
        for token in queryset:
            token_revoke(token=token, revoked_by=request.user, channel=Channel.WEB)  # type: ignore[arg-type]
        messages.success(request, f"Revoked {queryset.count()} token(s).")
