"""The admin site's two kinds of model page, and the audit log's own pages.

Every model page on Veil's admin site is one of two kinds (`config.admin.VeilAdminSite` makes any
other registration read-only):

- `ReadOnlyAdmin`: nothing is added, changed or deleted there.
- `AuditedAdmin`: every write goes through an audited service, which records it in the log in the
  admin's transaction, so the admin site is one more way into the services, never around them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from audit.exports import user_actor
from audit.models import (
    ArchiveBoundary,
    AuditEvent,
    AuditStream,
    ChainHead,
    Channel,
    Checkpoint,
    ExportJob,
    VerificationRun,
)
from audit.streams.config import StreamConfigError
from audit.streams.services import (
    check_stream,
    stream_create,
    stream_delete,
    stream_disable,
    stream_enable,
    stream_update,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Read-only: what the services write, shown to administrators and changed by none of them."""

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


class AuditedAdmin(admin.ModelAdmin):
    """A model page whose every write is one call to an audited service.

    Django's admin writes in `save_model`, `save_related` (many-to-many fields and inlines),
    `delete_model` and `delete_queryset` (the bulk delete action). Here a valid form becomes one
    call to `save_audited` (in `save_related`, where many-to-many choices are known), and each
    deleted object one call to `delete_audited`. Inlines are shown, never saved. A page offers
    adding only if `audited_add` is true, and deleting only if the subclass implements
    `delete_audited`; otherwise Django refuses both (403).
    """

    audited_add = True

    def save_audited(self, request: HttpRequest, form: ModelForm, change: bool) -> Model:
        """Save what `form` says through a service that records it; return the saved object."""
        raise NotImplementedError

    def delete_audited(self, request: HttpRequest, obj: Any) -> None:
        """Delete `obj` through a service that records it. Not implemented: deletes are refused."""
        raise NotImplementedError

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.audited_add and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        deletes = type(self).delete_audited is not AuditedAdmin.delete_audited
        return deletes and super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Nothing is written here: `save_related` saves the whole form through the service."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        saved = self.save_audited(request, form, change)
        form.instance.pk = saved.pk  # the admin's redirect and its own history name the saved object

    def construct_change_message(  # type: ignore[override]
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> Any:
        return super().construct_change_message(request, form, [], add)  # inlines are never saved

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_audited(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.delete_audited(request, obj)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "seq",
        "occurred_at",
        "action",
        "actor_name",
        "target_repr",
        "project",
        "channel",
    ]
    list_filter = ["action", "channel", "actor_type"]
    search_fields = ["actor_name", "actor_id", "target_repr", "target_id", "project"]


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ["seq", "signed_at", "key_id", "hash"]


@admin.register(ArchiveBoundary)
class ArchiveBoundaryAdmin(ReadOnlyAdmin):
    list_display = ["first_seq", "archived_before", "archived_at", "key_id"]


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "requested_by", "report", "format", "state", "rows"]
    list_filter = ["state", "format", "report"]


@admin.register(VerificationRun)
class VerificationRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "requested_by", "state", "ok", "finished_at"]
    list_filter = ["state", "ok"]


class AuditStreamForm(forms.ModelForm):
    """The stream's settings, checked by the same function the services use, so a bad URL or
    filter is an error on its field here, not a failed delivery later. Secrets are write-only."""

    url = forms.URLField(max_length=2000, assume_scheme="https", help_text="Where the events are POSTed.")
    secret_input = forms.CharField(
        label="Signing secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput,
        help_text="whsec_ and base64 of 32 random bytes (`manage.py audit streams add` makes one). "
        "Required when adding; leave empty to keep the current one.",
    )
    auth_value_input = forms.CharField(
        label="Auth header value",
        required=False,
        strip=True,
        widget=forms.PasswordInput,
        help_text="The value of the auth header (`Splunk <token>`, a Datadog API key). Leave empty to keep.",
    )
    FIELD_OF = {"secret": "secret_input", "auth_value": "auth_value_input"}

    class Meta:
        model = AuditStream
        fields = ["name", "url", "format", "action", "project", "auth_header"]

    def clean(self) -> dict:  # type: ignore[type-arg]
        data = super().clean() or {}
        if self.errors:
            return data
        adding = self.instance.pk is None
        if adding and not data.get("secret_input"):
            self.add_error("secret_input", "Give the signing secret the destination verifies with.")
            return data
        try:
            check_stream(
                url=data["url"],
                format=data["format"],
                action=data.get("action", ""),
                project=data.get("project", ""),
                secret=data.get("secret_input") or None,
                auth_header=data.get("auth_header", ""),
                auth_value=data.get("auth_value_input") or (None if not adding else ""),
            )
        except StreamConfigError as exc:
            self.add_error(self.FIELD_OF.get(exc.field, exc.field), exc.message)
        return data


@admin.register(AuditStream)
class AuditStreamAdmin(AuditedAdmin):
    """Destinations the audit log is streamed to. Every add, change, enable, disable and removal is
    one audited service call; the delivery state is shown, never edited (replay: the CLI)."""

    form = AuditStreamForm
    list_display = ["name", "url", "format", "enabled", "last_seq", "behind", "failures", "last_error"]
    list_filter = ["enabled", "format"]
    state_fields = [
        "enabled",
        "disabled_reason",
        "last_seq",
        "failures",
        "next_attempt_at",
        "last_attempt_at",
        "last_success_at",
        "last_error",
        "created_at",
    ]
    actions = ["disable", "enable"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return (["name"] if obj is not None else []) + (self.state_fields if obj is not None else [])

    @admin.display(description="Events behind")
    def behind(self, obj: AuditStream) -> int:
        head = ChainHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
        return max(head - obj.last_seq, 0)

    def save_audited(self, request: HttpRequest, form: ModelForm, change: bool) -> Model:
        data = form.cleaned_data
        settings = {
            "url": data["url"],
            "format": data["format"],
            "action": data.get("action", ""),
            "project": data.get("project", ""),
            "auth_header": data.get("auth_header", ""),
            "actor": user_actor(request.user),
            "channel": Channel.WEB,
        }
        if change:
            return stream_update(
                stream_id=form.instance.pk,
                secret=data.get("secret_input") or None,
                auth_value=data.get("auth_value_input") or None,
                **settings,
            )
        stream, _ = stream_create(
            name=data["name"],
            secret=data["secret_input"],
            auth_value=data.get("auth_value_input", ""),
            **settings,
        )
        return stream

    def delete_audited(self, request: HttpRequest, obj: Any) -> None:
        stream_delete(stream_id=obj.pk, actor=user_actor(request.user), channel=Channel.WEB)

    @admin.action(permissions=["change"], description="Disable selected streams")
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        for stream in queryset:
            stream_disable(
                stream_id=stream.pk,
                reason=f"disabled by {request.user}",
                actor=user_actor(request.user),
                channel=Channel.WEB,
            )
        messages.success(request, f"Disabled {queryset.count()} stream(s).")

    @admin.action(
        permissions=["change"], description="Enable selected streams (they catch up from their cursor)"
    )
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        for stream in queryset:
            stream_enable(stream_id=stream.pk, actor=user_actor(request.user), channel=Channel.WEB)
        messages.success(request, f"Enabled {queryset.count()} stream(s).")
