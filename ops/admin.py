from django.contrib import admin

from core.admin import SuperuserOnlyAdmin
from ops.models import Webhook, WebhookDelivery


@admin.register(Webhook)
class WebhookAdmin(SuperuserOnlyAdmin):
    list_display = ["url", "project", "events", "is_active", "created_at"]
    list_filter = ["is_active", "project"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(SuperuserOnlyAdmin):
    list_display = ["event", "webhook", "state", "attempts", "last_status_code", "created_at", "delivered_at"]
    list_filter = ["state", "event"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request):
        return False
