from django.apps import AppConfig


class OpsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ops"
    verbose_name = "Operations: webhooks"

    def ready(self):
        from core.events import domain_event
        from ops.dispatch import on_domain_event

        domain_event.connect(on_domain_event, dispatch_uid="ops.webhooks")
