from django.contrib import admin

from core.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Append-only: visible to admins, never changed or deleted here."""

    list_display = ["created_at", "actor", "event_type", "project", "target"]
    list_filter = ["event_type", "project"]
    search_fields = ["actor__username", "target"]
    readonly_fields = ["created_at", "actor", "event_type", "project", "target", "extra"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
