from django.apps import AppConfig


class OpsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ops"
    verbose_name = "Operations: webhooks"

    def ready(self):
        from core.events import domain_event
        from ops.services import record_deliveries_for_event

        domain_event.connect(record_deliveries_for_event, dispatch_uid="ops.webhooks")
