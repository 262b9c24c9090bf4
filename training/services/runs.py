"""Starting, cancelling and recording training runs: the worker's writes on its run, the stale-run sweep."""

from __future__ import annotations

import logging
import math
import warnings
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import F, Max, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from core.audit import record_audit
from core.db import lock_rows
from core.events import announce
from core.exceptions import Conflict
from core.models import AuditEvent
from feedback.models import PreferenceSnapshot, Project
from training.models import ModelVersion, TrainingRun, TrainingRunMetric
from training.run_configs import check_model_references, validate_config
from training.signals import run_queued

logger = logging.getLogger(__name__)

LOG_LIMIT_CHARS = 200_000
RUN_ALREADY_FINISHED = "This run has already finished."
# The django-tasks job that executes a run (training.tasks.run_training_job, named here so services need not
# import tasks): a dead worker's job row is failed together with its run.
RUN_JOB_TASK_PATH = "training.tasks.run_training_job"
WORKER_LOST = ("The worker stopped sending heartbeats for over {seconds} s (killed or crashed); "
               "nothing was registered. Start the run again.")
RUN_QUEUE_FULL = ("This project already has {queued} runs queued, its limit (TRAINING_MAX_QUEUED_PER_PROJECT = "
                  "{limit}): wait for one to start, or cancel one.")
# The worker takes the READY job of highest priority first (django-tasks-db: priority, then age). Priorities of
# runs' jobs are 0 down to this; the worker's own maintenance tick keeps the default, 0.
LOWEST_JOB_PRIORITY = -100


class RunQueueFull(Conflict):
    """The project holds TRAINING_MAX_QUEUED_PER_PROJECT queued runs already (one worker serves every project)."""

    code = "run_queue_full"


# --- starting and stopping runs ----------------------------------------------------------------------------------


def _insert_run(
    *, project, kind: str, config: dict | None = None, created_by=None, snapshot: PreferenceSnapshot | None = None,
    base_version: ModelVersion | None = None, parent_run: TrainingRun | None = None, enqueue: bool = True,
) -> TrainingRun:
    """Insert a queued run and (unless `enqueue` is off) hand it to the worker once the row is committed. The
    settings are stored as given: only `record_run_start`, which validates and audits them first, calls this."""
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
    snapshot: PreferenceSnapshot | None = None,
) -> TrainingRun:
    """Record the start of a run, for the services package only: every door calls `start_training` (which also
    moves iterative-DPO rounds on), never this.

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
        if enqueue and parent_run is None:  # a chain's steps run inside their parent, not in the queue
            check_queue_room(project=project)
        run = _insert_run(project=project, kind=kind, config=normalised, created_by=created_by, enqueue=enqueue,
                          parent_run=parent_run, snapshot=snapshot)
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


# --- the queue between projects: its limit and its order ----------------------------------------------------------


def check_queue_room(*, project) -> None:
    """Refuse (RunQueueFull, 409 `run_queue_full`, naming the limit) a run that would queue past the project's
    TRAINING_MAX_QUEUED_PER_PROJECT. Call it inside the transaction that creates the run: the project's row is
    locked (SQLite: the IMMEDIATE transaction), so two starts at once cannot both take the last place."""
    limit = settings.TRAINING_MAX_QUEUED_PER_PROJECT
    lock_rows(Project.objects.filter(pk=project.pk)).first()
    queued = TrainingRun.objects.filter(project=project, state=TrainingRun.State.QUEUED,
                                        parent_run__isnull=True).count()
    if queued >= limit:
        raise RunQueueFull(RUN_QUEUE_FULL.format(queued=queued, limit=limit), extra={"limit": limit, "queued": queued})


def fair_order() -> list[int]:
    """Every queued run the worker will take, in the order it should: round-robin between projects, the project
    served least recently first. A run's key is (its place in its project's queue, when its project last had a
    run claimed — never first —, its id), so each project's next run comes before any project's next-but-one,
    and inside a project runs go first come, first served. Chain steps (run inside their parent) are not queued."""
    queued = list(TrainingRun.objects.filter(state=TrainingRun.State.QUEUED, parent_run__isnull=True)
                  .order_by("pk").values_list("pk", "project_id"))
    if not queued:
        return []
    last_claimed = dict(TrainingRun.objects.filter(parent_run__isnull=True, project_id__in={p for _, p in queued},
                                                   started_at__isnull=False)
                        .values("project_id").annotate(last=Max("started_at")).values_list("project_id", "last"))
    never = timezone.now()  # a stand-in: "never claimed" already sorts first
    places: dict[int, int] = {}
    keyed = []
    for run_id, project_id in queued:
        place = places[project_id] = places.get(project_id, -1) + 1
        last = last_claimed.get(project_id)
        keyed.append(((place, last is not None, last or never, run_id), run_id))
    return [run_id for _, run_id in sorted(keyed)]


def reprioritise_queue_quietly() -> None:
    """`reprioritise_queue` where a refusal must not stop the caller (a claim, an enqueue after commit): the next
    enqueue or claim puts the order right."""
    try:
        reprioritise_queue()
    except DatabaseError:
        logger.warning("the queue of runs was not reordered", exc_info=True)


def reprioritise_queue() -> int:
    """Give the waiting jobs of queued runs the priorities of `fair_order` (0 for the first, then −1, … down to
    LOWEST_JOB_PRIORITY; past it, first come first served), after every enqueue and every claim: the worker takes
    the highest first. Returns how many jobs changed."""
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    priorities = {run_id: max(LOWEST_JOB_PRIORITY, -rank) for rank, run_id in enumerate(fair_order())}
    if not priorities:
        return 0
    waiting = DBTaskResult.objects.filter(status=TaskResultStatus.READY, task_path=RUN_JOB_TASK_PATH)
    changed = 0
    for job_id, args_kwargs, priority in waiting.values_list("pk", "args_kwargs", "priority"):
        wanted = priorities.get((args_kwargs.get("args") or [None])[0])
        if wanted is not None and wanted != priority:
            changed += DBTaskResult.objects.filter(pk=job_id, status=TaskResultStatus.READY).update(priority=wanted)
    return changed


# --- the worker's writes on its run ------------------------------------------------------------------------------


def claim_run(*, run_id: int) -> bool:
    """Claim a queued run for this worker; False if another worker has it or it was cancelled. The waiting jobs are
    reordered (`reprioritise_queue`): the project just served goes behind the others."""
    now = timezone.now()
    claimed = bool(
        TrainingRun.objects.filter(pk=run_id, state=TrainingRun.State.QUEUED).update(
            state=TrainingRun.State.RUNNING, started_at=now, heartbeat_at=now
        )
    )
    if claimed:
        reprioritise_queue_quietly()
    return claimed


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
