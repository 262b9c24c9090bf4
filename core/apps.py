from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares and that depends on no app: the audit trail, permissions, domain events, db helpers."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "core"
    verbose_name = "Core"
