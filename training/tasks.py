"""Jobs for the worker (Django's tasks API via the django-tasks backport; `manage.py db_worker` runs them)."""

from django_tasks import task

from training import runners


@task()
def run_training_job(run_id: int) -> str:
    # Importing the runner modules registers every kind of run.
    import training.jobs  # noqa: F401

    return runners.execute(run_id)


MAINTENANCE_INTERVAL_SECONDS = 60


@task()
def maintenance_tick() -> dict:
    """Every minute inside the worker: fail runs whose worker died, start retraining that is due, then
    schedule the next tick (a self-rescheduling task: no cron needed)."""
    from datetime import timedelta

    from django.utils import timezone

    from training import services

    failed = services.fail_stale_runs()
    started = [run.pk for run in services.retrain_if_due()]
    maintenance_tick.using(run_after=timezone.now() + timedelta(seconds=MAINTENANCE_INTERVAL_SECONDS)).enqueue()
    return {"stale_runs_failed": failed, "retrain_runs_started": started}


def ensure_maintenance_scheduled() -> bool:
    """Enqueue the first maintenance tick unless one is already waiting or running. Returns True if enqueued."""
    from django_tasks_db.models import DBTaskResult

    path = f"{maintenance_tick.func.__module__}.{maintenance_tick.func.__qualname__}"
    if DBTaskResult.objects.filter(task_path=path, status__in=["READY", "RUNNING"]).exists():
        return False
    maintenance_tick.enqueue()
    return True
