from django.contrib import admin

from audit.models import ArchiveBoundary, AuditEvent, Checkpoint, ExportJob, VerificationRun


class ReadOnlyAdmin(admin.ModelAdmin):
    """Read-only: the log and its signatures are changed by nobody, including administrators."""

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


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
