"""The admin site's two kinds of model page, and the audit log's own pages.

Every model page on Veil's admin site is one of two kinds (`config.admin.VeilAdminSite` makes any
other registration read-only):

- `ReadOnlyAdmin`: nothing is added, changed or deleted there.
- `AuditedAdmin`: every write goes through an audited service, which records it in the log in the
  admin's transaction, so the admin site is one more way into the services, never around them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from audit.models import ArchiveBoundary, AuditEvent, Checkpoint, ExportJob, VerificationRun


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
