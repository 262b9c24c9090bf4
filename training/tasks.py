"""The worker's entry points (Django's tasks API via the django-tasks backport; `manage.py db_worker` runs them)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_tasks import task

from training import execution, services

MAINTENANCE_INTERVAL_SECONDS = 60


@task()
def run_training_job(run_id: int) -> str:
    return execution.execute(run_id)


def enqueue_run(sender=None, *, run_id: int, **kwargs) -> None:
    """Receiver of training.signals.run_queued (sent after the run's transaction commits)."""
    run_training_job.enqueue(run_id)


@task()
def maintenance_tick() -> dict:
    """Every minute inside the worker: fail runs whose worker died, start retraining that is due, then
    schedule the next tick (a self-rescheduling task: no cron needed)."""
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
