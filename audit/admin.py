from django.contrib import admin

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the log is changed by nobody, including administrators."""

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

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
