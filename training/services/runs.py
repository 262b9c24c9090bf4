"""Starting, cancelling and recording training runs: the worker's writes on its run, the stale-run sweep."""

from __future__ import annotations

import math
import warnings
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from core.audit import record_audit
from core.events import announce
from core.exceptions import Conflict
from core.models import AuditEvent
from feedback.models import PreferenceSnapshot
from training.models import ModelVersion, TrainingRun, TrainingRunMetric
from training.run_configs import check_model_references, validate_config
from training.signals import run_queued

LOG_LIMIT_CHARS = 200_000
RUN_ALREADY_FINISHED = "This run has already finished."
# The django-tasks job that executes a run (training.tasks.run_training_job, named here so services need not
# import tasks): a dead worker's job row is failed together with its run.
RUN_JOB_TASK_PATH = "training.tasks.run_training_job"
WORKER_LOST = ("The worker stopped sending heartbeats for over {seconds} s (killed or crashed); "
               "nothing was registered. Start the run again.")


# --- starting and stopping runs ----------------------------------------------------------------------------------


def create_run(
    *, project, kind: str, config: dict | None = None, created_by=None, snapshot: PreferenceSnapshot | None = None,
    base_version: ModelVersion | None = None, parent_run: TrainingRun | None = None, enqueue: bool = True,
) -> TrainingRun:
    """Record a queued run and (unless `enqueue` is off) hand it to the worker once the row is committed.

    The settings are stored as given: `start_training` is the entry point that validates them first."""
    with transaction.atomic():
        run = TrainingRun.objects.create(
            project=project, kind=kind, config=config or {}, created_by=created_by, snapshot=snapshot,
            base_version=base_version, parent_run=parent_run,
        )
        if enqueue:
            transaction.on_commit(lambda: run_queued.send(sender=TrainingRun, run_id=run.pk))
    return run


def record_run_start(
    *, project, kind: str, config: dict | None, created_by=None, enqueue: bool = True, parent_run=None,
) -> TrainingRun:
    """Start a run (`training.services.start_training` is the way in: it also moves iterative-DPO rounds on).

    Validates the settings now (ValidationError naming the setting), records the run, its settings'
    warnings (in its log) and an audit row in one transaction, then queues it after commit (or leaves
    it for the caller to execute in-process when `enqueue` is off)."""
    with warnings.catch_warnings(record=True) as caught:  # e.g. a PPO clip range outside 0.1–0.3
        warnings.simplefilter("always")
        try:
            normalised = validate_config(kind, config)
        except (TypeError, ValueError) as exc:
            raise ValidationError({"config": str(exc)}) from None
    check_model_references(kind, normalised, project)  # only MODEL_DIR, never another project's registry
    messages = [str(w.message) for w in caught]
    with transaction.atomic():
        run = create_run(project=project, kind=kind, config=normalised, created_by=created_by, enqueue=enqueue,
                         parent_run=parent_run)
        for message in messages:
            append_log(run_id=run.pk, line=f"warning: {message}")
        record_audit(actor=created_by, event_type=AuditEvent.Type.RUN_STARTED, project=project,
                     target=f"run:{run.pk}", extra={"kind": kind, "warnings": messages})
    run.refresh_from_db(fields=["log"])
    return run


def request_cancel(*, run: TrainingRun, actor=None) -> TrainingRun:
    """Ask a run to stop. A queued run is cancelled at once; a running one stops at its next step."""
    with transaction.atomic():
        queued = TrainingRun.objects.filter(pk=run.pk, state=TrainingRun.State.QUEUED).update(
            state=TrainingRun.State.CANCELLED, cancel_requested=True, finished_at=timezone.now()
        )
        if not queued and not TrainingRun.objects.filter(pk=run.pk, state=TrainingRun.State.RUNNING).update(
            cancel_requested=True
        ):
            raise Conflict(RUN_ALREADY_FINISHED)
        # A chain's running step stops with it (its heartbeat also reads the parent's flag: see `beat`).
        TrainingRun.objects.filter(parent_run=run.pk, state=TrainingRun.State.RUNNING).update(cancel_requested=True)
        record_audit(actor=actor, event_type=AuditEvent.Type.RUN_CANCELLED, project=run.project,
                     target=f"run:{run.pk}", extra={"kind": run.kind, "was": "queued" if queued else "running"})
    return TrainingRun.objects.get(pk=run.pk)


# --- the worker's writes on its run ------------------------------------------------------------------------------


def start_run(*, run_id: int) -> bool:
    """Claim a queued run for this worker; False if another worker has it or it was cancelled."""
    now = timezone.now()
    return bool(
        TrainingRun.objects.filter(pk=run_id, state=TrainingRun.State.QUEUED).update(
            state=TrainingRun.State.RUNNING, started_at=now, heartbeat_at=now
        )
    )


def beat(*, run_id: int, progress: float | None = None) -> bool:
    """Record that the worker is alive; returns True when someone asked the run (or the chain it is a step
    of) to stop. Two short statements, no transaction: nothing here holds the write lock for long."""
    changes = {"heartbeat_at": timezone.now()}
    if progress is not None:
        changes["progress"] = max(0.0, min(1.0, progress))
    TrainingRun.objects.filter(pk=run_id, state=TrainingRun.State.RUNNING).update(**changes)
    return TrainingRun.objects.filter(
        Q(cancel_requested=True) | Q(parent_run__cancel_requested=True), pk=run_id
    ).exists()


def append_log(*, run_id: int, line: str) -> None:
    stamp = timezone.now().strftime("%H:%M:%S")
    TrainingRun.objects.filter(pk=run_id).update(log=Concat(F("log"), Value(f"{stamp} {line}\n")))


def json_safe(value):
    """Metrics are JSON: NaN and infinities (which JSON, SQLite's JSON_VALID and PostgreSQL's jsonb refuse) are
    kept as strings, in nested dicts and lists too (a summary holds the gate's report)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    value = float(value)
    return value if math.isfinite(value) else str(value)


@transaction.atomic
def record_step(*, run_id: int, step: int, metrics: dict, progress: float | None = None) -> bool:
    """Store one step's metrics (a flat dict; a second report for the same step is merged in) and beat.
    Returns True when cancellation was requested."""
    clean = {k: json_safe(v) for k, v in metrics.items() if k != "step"}
    row, created = TrainingRunMetric.objects.get_or_create(run_id=run_id, step=step, defaults={"metrics": clean})
    if not created:
        row.metrics = {**row.metrics, **clean}
        row.save(update_fields=["metrics"])
    return beat(run_id=run_id, progress=progress)


def attach_snapshot(*, run: TrainingRun, snapshot: PreferenceSnapshot) -> None:
    """Name the preference snapshot a run learns from (created by the run when none was given)."""
    TrainingRun.objects.filter(pk=run.pk).update(snapshot=snapshot)
    run.snapshot = snapshot


def finish_run(
    *, run_id: int, state: str, summary: dict | None = None, error: str = "",
    produced_version: ModelVersion | None = None,
) -> None:
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run_id).update(
            state=state, summary=json_safe(summary or {}), error=error[-LOG_LIMIT_CHARS:],
            produced_version=produced_version,
            finished_at=timezone.now(), progress=1.0 if state == TrainingRun.State.SUCCEEDED else F("progress"),
        )
        run = TrainingRun.objects.select_related("project").get(pk=run_id)
        event = "retrain.finished" if run.kind == TrainingRun.Kind.RETRAIN else "run.finished"
        announce(event=event, project=run.project, payload={
            "run": run.pk, "kind": run.kind, "state": state, "project": run.project.slug,
            "produced_version": produced_version.pk if produced_version else None,
        })


def fail_stale_runs(*, stale_after_seconds: int | None = None) -> int:
    """End runs whose worker stopped beating (killed or crashed), so nothing stays "running" forever:
    failed, or cancelled when someone had asked them to stop. The django-tasks job row of each such run
    is marked failed too (a killed worker never set it). Returns how many runs were ended."""
    stale_after = stale_after_seconds or settings.RUN_STALE_AFTER_SECONDS
    now = timezone.now()
    stale = TrainingRun.objects.filter(state=TrainingRun.State.RUNNING, heartbeat_at__lt=now - timedelta(seconds=stale_after))
    message = WORKER_LOST.format(seconds=stale_after)
    ended = []
    for run_id, cancelled in list(stale.values_list("pk", "cancel_requested")):
        state = TrainingRun.State.CANCELLED if cancelled else TrainingRun.State.FAILED
        if stale.filter(pk=run_id).update(state=state, finished_at=now, error="" if cancelled else message):
            ended.append(run_id)
    for run_id in ended:
        _fail_run_job(run_id=run_id, message=message)
    return len(ended)


def _fail_run_job(*, run_id: int, message: str) -> int:
    """Mark the django-tasks job row(s) still RUNNING for this run as FAILED (their worker is gone)."""
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(
        status=TaskResultStatus.RUNNING, task_path=RUN_JOB_TASK_PATH, args_kwargs__args__0=run_id,
    ).update(status=TaskResultStatus.FAILED, finished_at=timezone.now(),
             exception_class_path="training.services.WorkerLost", traceback=message)
