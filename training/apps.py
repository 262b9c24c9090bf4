from django.apps import AppConfig


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"
    verbose_name = "Training and model registry"

    def ready(self):
        from training.signals import run_queued
        from training.tasks import enqueue_run

        run_queued.connect(enqueue_run, dispatch_uid="training.enqueue_run")
