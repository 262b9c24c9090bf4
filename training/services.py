"""Every write of the training app: runs and their lifecycle, the model registry, published samples.

A run's life: queued → running → succeeded | failed | cancelled. The worker that executes it beats
a heartbeat; a run whose heartbeat stops (the worker was killed) is marked failed by
`fail_stale_runs`, so nothing stays "running" forever, and no ModelVersion is registered unless
its files were completely written first.

Imports go one way: tasks → execution → runners → services. Services queue a run by sending
`training.signals.run_queued` after commit; they never import the code that executes runs.
"""

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
from core.db import lock_rows
from core.events import announce
from core.exceptions import Conflict
from core.models import AuditEvent
from feedback import selectors as feedback_selectors
from feedback.models import PreferenceSnapshot
from training import selectors
from training.models import ModelVersion, RetrainSchedule, TrainingRun, TrainingRunMetric
from training.run_configs import check_model_references, validate_config
from training.signals import run_queued

LOG_LIMIT_CHARS = 200_000
RUN_ALREADY_FINISHED = "This run has already finished."
ONLY_POLICIES_ACTIVATE = "Only policies can be activated this way."
NAME_THE_PROJECT = "Name the project whose policy this becomes."
OTHER_PROJECTS_POLICY = "This policy belongs to another project."
CANNOT_ACTIVATE_REJECTED = "{name} was rejected by its gate and cannot be activated."
CANNOT_ACTIVATE_UNEVALUATED = "{name} has no evaluation metrics and cannot be activated."
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


def start_training(
    *, project, kind: str, config: dict | None, created_by=None, enqueue: bool = True, parent_run=None,
) -> TrainingRun:
    """Start a run: the one way in for the API, the pages, the admin and the commands.

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


def _json_number(value):
    """Metrics are JSON: NaN and infinities (which JSON, SQLite's JSON_VALID and PostgreSQL's jsonb refuse) are
    kept as strings, in nested dicts and lists too (a summary holds the gate's report)."""
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_number(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    value = float(value)
    return value if math.isfinite(value) else str(value)


@transaction.atomic
def record_step(*, run_id: int, step: int, metrics: dict, progress: float | None = None) -> bool:
    """Store one step's metrics (a flat dict; a second report for the same step is merged in) and beat.
    Returns True when cancellation was requested."""
    clean = {k: _json_number(v) for k, v in metrics.items() if k != "step"}
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
            state=state, summary=_json_number(summary or {}), error=error[-LOG_LIMIT_CHARS:],
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


# --- the model registry ------------------------------------------------------------------------------------------


def check_activatable(*, version: ModelVersion) -> None:
    """The registry's invariants for an active version: never one its gate rejected, never one nothing
    evaluated. The bootstrapped defaults (no project) are the baseline everything is measured against,
    so they are exempt from the second rule."""
    if version.status == ModelVersion.Status.REJECTED:
        raise ValidationError(CANNOT_ACTIVATE_REJECTED.format(name=version.name))
    if version.project_id is not None and not version.metrics:
        raise ValidationError(CANNOT_ACTIVATE_UNEVALUATED.format(name=version.name))


@transaction.atomic
def register_version(
    *, project, name: str, kind: str, path: str, sha256: str, config: dict, metrics: dict,
    parent: ModelVersion | None = None, reward_model: ModelVersion | None = None,
    snapshot: PreferenceSnapshot | None = None, rejected: bool = False, activate: bool = False, actor=None,
) -> ModelVersion:
    """Register a trained version, audit it, announce it and (with `activate`) make it active — in one
    transaction, so a version is never registered without its audit row or half activated.

    `rejected`: its gate refused it; it is kept for the record and can never be activated."""
    status = ModelVersion.Status.REJECTED if rejected else ModelVersion.Status.CANDIDATE
    version = ModelVersion(
        project=project, name=name, kind=kind, path=path, sha256=sha256, config=config, metrics=_json_number(metrics),
        parent=parent, reward_model=reward_model, snapshot=snapshot, status=status,
    )
    version.full_clean()
    version.save()
    record_audit(actor=actor, event_type=AuditEvent.Type.VERSION_REGISTERED, project=project,
                 target=f"model_version:{version.pk}",
                 extra={"name": version.name, "kind": version.kind, "status": status, "activate": activate})
    if activate:
        version = _activate(version=version, project=project)
    announce(event="model_version.registered", project=project, payload={
        "model_version": version.pk, "name": version.name, "kind": version.kind, "sha256": version.sha256,
        "status": version.status, "snapshot": snapshot.pk if snapshot else None, "parent": parent.pk if parent else None,
    })
    return version


def _activate(*, version: ModelVersion, project) -> ModelVersion:
    """Make `version` active. A project has one active policy (the others retire), and so has the
    project-less default scope (`project` None); reward models stay active side by side (PPO uses the
    previous one as a held-out judge)."""
    check_activatable(version=version)
    if version.kind == ModelVersion.Kind.POLICY:
        scope = {"project": project} if project is not None else {"project__isnull": True}
        ModelVersion.objects.filter(**scope, kind=ModelVersion.Kind.POLICY, status=ModelVersion.Status.ACTIVE
                                    ).exclude(pk=version.pk).update(status=ModelVersion.Status.RETIRED)
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.ACTIVE)
    version.refresh_from_db()
    return version


@transaction.atomic
def activate_policy(*, version: ModelVersion, project=None, actor=None) -> ModelVersion:
    """Make `version` the policy that samples for `project` (default: its own): rolling back or forward.

    The project's other active policies retire. Rolling back to a project-less default policy just
    retires the project's own, so the default samples for it again."""
    if version.kind != ModelVersion.Kind.POLICY:
        raise ValidationError(ONLY_POLICIES_ACTIVATE)
    project = project or version.project
    if project is None:
        raise ValidationError(NAME_THE_PROJECT)
    if version.project_id not in (None, project.pk):
        raise ValidationError(OTHER_PROJECTS_POLICY)
    version = _activate(version=version, project=project)
    record_audit(actor=actor, event_type=AuditEvent.Type.POLICY_ROLLED_BACK, project=project,
                 target=f"model_version:{version.pk}", extra={"name": version.name})
    return version


def register_default_policy(*, path) -> ModelVersion:
    """The bootstrapped default policy as the active, project-less policy version (idempotent)."""
    from training.pipeline.models import DEFAULT_POLICY, manifest_sha256

    sha = manifest_sha256(path)
    version, _ = ModelVersion.objects.update_or_create(
        kind=ModelVersion.Kind.POLICY, name=DEFAULT_POLICY,
        defaults={"path": str(path), "sha256": sha, "status": ModelVersion.Status.ACTIVE, "project": None,
                  "config": {"source": "bootstrap_models"}},
    )
    return version


# --- the retraining schedule ------------------------------------------------------------------------------------


def retrain_if_due(*, now=None, agreement_fn=None) -> list[TrainingRun]:
    """Start a retrain chain for every project whose schedule is due. Idempotent.

    Due: N new judgements since the last retrain, or T hours passed with at least one new judgement,
    and the recent judgements' agreement at or above the schedule's threshold. Two workers calling
    this at once start one run: the schedule row is locked (SQLite: the IMMEDIATE transaction) and
    advanced with a conditional UPDATE.
    """
    from feedback.models import Judgement

    now = now or timezone.now()
    started = []
    for schedule_id in RetrainSchedule.objects.filter(is_enabled=True).values_list("pk", flat=True):
        with transaction.atomic():
            schedule = lock_rows(RetrainSchedule.objects.select_related("project").filter(pk=schedule_id)).first()
            project = schedule.project
            busy = TrainingRun.objects.filter(
                project=project, kind=TrainingRun.Kind.RETRAIN,
                state__in=[TrainingRun.State.QUEUED, TrainingRun.State.RUNNING],
            ).exists()
            if busy:
                continue
            new = Judgement.objects.filter(task__project=project, pk__gt=schedule.last_judgement_id)
            new_count = new.count()
            if not new_count:
                continue
            hours_passed = schedule.last_triggered_at is None or (
                now - schedule.last_triggered_at >= timedelta(hours=schedule.max_hours)
            )
            if new_count < schedule.min_new_judgements and not hours_passed:
                continue
            agreement = (agreement_fn or project_pairwise_agreement)(project=project)
            if agreement is not None and agreement < schedule.min_agreement:
                continue
            max_id = new.order_by("-pk").values_list("pk", flat=True).first()
            advanced = RetrainSchedule.objects.filter(pk=schedule.pk, last_judgement_id=schedule.last_judgement_id).update(
                last_judgement_id=max_id, last_triggered_at=now
            )
            if advanced:
                started.append(create_run(
                    project=project, kind=TrainingRun.Kind.RETRAIN,
                    config=validate_config(TrainingRun.Kind.RETRAIN, {
                        "method": schedule.method, "steps": schedule.config, "trigger": {
                            "new_judgements": new_count, "agreement": agreement, "hours_passed": bool(hours_passed)}}),
                ))
    return started


def project_pairwise_agreement(*, project, last_n: int = 2000) -> float | None:
    """Mean agreement of recent consensus pairs (None when no pair has two judges yet)."""
    return feedback_selectors.recent_agreement(project=project, last_n=last_n)


# --- published samples ------------------------------------------------------------------------------------------


@transaction.atomic
def publish_prompt(*, project, prompt, samples: list[tuple[str, ModelVersion]], generation: dict,
                   priority: int) -> bool:
    """Store a prompt's sampled completions (once per text and model) and make a comparison task of them,
    together. False (and nothing stored) when fewer than two distinct completions remain."""
    from feedback import services as feedback_services
    from feedback.importing import CompletionRow
    from feedback.models import Completion

    if len(samples) < 2:
        return False
    completions = [
        Completion.objects.get_or_create(
            prompt=prompt, content_hash=CompletionRow(text=text, model=version.name).content_hash,
            defaults={"text": text, "model_name": version.name, "model_version": version, "generation": generation},
        )[0]
        for text, version in samples[:4]
    ]
    feedback_services.create_task(project=project, prompt=prompt, completions=completions, priority=priority)
    return True


def record_published(*, project, run: TrainingRun, policy: ModelVersion, tasks: int) -> None:
    record_audit(actor=run.created_by, event_type=AuditEvent.Type.SAMPLES_PUBLISHED, project=project,
                 target=f"run:{run.pk}", extra={"policy": policy.name, "tasks": tasks})


def queue_demo_sampling(*, project) -> TrainingRun | None:
    """Queue one publish run that samples completions for the demo's prompts without any (once)."""
    if selectors.active_policy(project=project) is None:
        return None
    if TrainingRun.objects.filter(project=project, kind=TrainingRun.Kind.PUBLISH).exists():
        return None
    return start_training(project=project, kind=TrainingRun.Kind.PUBLISH, config={"prompts": "without_completions"})
