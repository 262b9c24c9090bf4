"""The worker's entry points (Django's tasks API via the django-tasks backport; `manage.py db_worker` runs them).

One worker serves every project, so the order is fair between them: after every enqueue and every claim the
waiting jobs get priorities in round-robin order between projects (`training.services.runs.fair_order`), which
the worker follows: project B's one run goes before project A's second.

A worker runs one job at a time, so a long training job would hold up the every-minute maintenance
task queued behind it. While a job runs, a `MaintenanceThread` beside it (its own database connection)
does the same maintenance every MAINTENANCE_INTERVAL_SECONDS: stale runs are ended, due retraining is
queued, expired leases go back to the pool, judged DPO rounds go on to train, and the self-rescheduling
tick is kept scheduled.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils import timezone
from django_tasks import task

from config import health
from training import execution, services
from training.services import runs
from training.models import TrainingRun
from training.pipeline.devices import passive_openmp

passive_openmp()  # the worker's OpenMP policy, before any job loads torch

logger = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_SECONDS = 60
TICK_STALE_AFTER_SECONDS = 600  # a tick takes seconds; one RUNNING this long lost its worker


@task()
def run_training_job(run_id: int) -> str:
    with maintenance_alongside():
        return execution.execute(run_id)

assert services.RUN_JOB_TASK_PATH == f"{run_training_job.func.__module__}.{run_training_job.func.__qualname__}"


def enqueue_run(sender=None, *, run_id: int, **kwargs) -> None:
    """Receiver of training.signals.run_queued (sent after the run's transaction commits). The waiting jobs are
    then reordered (`runs.fair_order`): the new run waits behind its own project's runs, not behind everyone's."""
    run_training_job.using(priority=runs.LOWEST_JOB_PRIORITY).enqueue(run_id)
    runs.reprioritise_queue_quietly()


def run_maintenance() -> dict:
    """One round of the worker's housekeeping (idempotent: any number of workers may run it at once)."""
    from feedback import services as feedback_services
    from feedback.models import Assignment, Project
    from training.promotion import decide_all_promotions

    failed = services.fail_stale_runs()
    started = [run.pk for run in services.retrain_if_due()]
    now = timezone.now()
    expired = Assignment.objects.filter(state=Assignment.State.LEASED, leased_until__lte=now)
    released = sum(feedback_services.release_expired_leases(project=project, now=now)
                   for project in Project.objects.filter(pk__in=expired.values("project_id")))
    # Candidates whose head-to-head judgements now decide them (the task's result must be JSON: ids, verdicts).
    promotions = [[version.pk, verdict] for version, verdict in decide_all_promotions()]
    rounds = services.finish_judged_rounds()  # a DPO round whose human share is judged goes on to DPO
    scratch = services.remove_orphaned_scratch()  # after fail_stale_runs: a killed worker's run is over by now
    return {"stale_runs_failed": failed, "retrain_runs_started": started, "leases_released": released,
            "promotions": promotions, "dpo_rounds_finished": rounds["finished"], "dpo_rounds_failed": rounds["failed"],
            "scratch_removed": scratch}


@task()
def maintenance_tick() -> dict:
    """Every minute inside the worker: `run_maintenance`, then schedule the next tick (a self-rescheduling
    task: no cron needed)."""
    result = run_maintenance()
    maintenance_tick.using(run_after=timezone.now() + timedelta(seconds=MAINTENANCE_INTERVAL_SECONDS)).enqueue()
    return result


def _tick_path() -> str:
    return f"{maintenance_tick.func.__module__}.{maintenance_tick.func.__qualname__}"


def ensure_maintenance_scheduled() -> bool:
    """Enqueue the first maintenance tick unless one is already waiting or running. Returns True if enqueued.

    A tick left RUNNING by a killed worker would stop the chain for good: it is marked failed first."""
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    ticks = DBTaskResult.objects.filter(task_path=_tick_path())
    ticks.filter(status=TaskResultStatus.RUNNING,
                 started_at__lt=timezone.now() - timedelta(seconds=TICK_STALE_AFTER_SECONDS)).update(
        status=TaskResultStatus.FAILED, finished_at=timezone.now(), exception_class_path="training.tasks.WorkerLost",
        traceback="the worker running this maintenance tick stopped (killed or crashed)")
    if ticks.filter(status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING]).exists():
        return False
    maintenance_tick.enqueue()
    return True


class MaintenanceThread(threading.Thread):
    """`run_maintenance` every `interval` seconds while a job keeps the worker's main thread busy."""

    def __init__(self, interval: float):
        super().__init__(daemon=True, name="worker-maintenance")
        self.interval = interval
        self.stopped = threading.Event()
        self.rounds = 0

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                try:
                    run_maintenance()
                    ensure_maintenance_scheduled()
                    self.rounds += 1
                except Exception:  # a failed round is retried next interval; the thread lives on
                    logger.exception("maintenance beside a running job failed")
                    execution.close_connection_quietly()
        finally:
            execution.close_connection_quietly()


@contextlib.contextmanager
def maintenance_alongside(interval: float | None = None):
    """Run maintenance in a thread of its own for as long as the block (a job) runs."""
    thread = MaintenanceThread(interval or getattr(settings, "MAINTENANCE_INTERVAL_SECONDS", MAINTENANCE_INTERVAL_SECONDS))
    thread.start()
    try:
        yield thread
    finally:
        thread.stopped.set()
        thread.join(timeout=60)


def latest_run_heartbeat():
    """When a running run last beat: a worker busy with one long job is alive (for /readyz)."""
    return TrainingRun.objects.filter(state=TrainingRun.State.RUNNING).aggregate(last=Max("heartbeat_at"))["last"]


health.register_worker_activity(latest_run_heartbeat)
