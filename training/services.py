"""Every write of the training app: runs, their heartbeats and results, and the model registry.

A run's life: queued → running → succeeded | failed | cancelled. The worker that executes it beats
a heartbeat; a run whose heartbeat stops (the worker was killed) is marked failed by
`fail_stale_runs`, so nothing stays "running" forever, and no ModelVersion is registered unless
its files were completely written first.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from core.exceptions import Conflict
from core.db import lock_rows
from training.models import ModelVersion, PreferenceSnapshot, TrainingRun

LOG_LIMIT_CHARS = 200_000
RUN_ALREADY_FINISHED = "This run has already finished."


def create_run(
    *, project, kind: str, config: dict | None = None, created_by=None, snapshot: PreferenceSnapshot | None = None,
    base_version: ModelVersion | None = None, parent_run: TrainingRun | None = None, enqueue: bool = True,
) -> TrainingRun:
    """Record a queued run and hand it to the worker once the row is committed."""
    from training.tasks import run_training_job

    with transaction.atomic():
        run = TrainingRun.objects.create(
            project=project, kind=kind, config=config or {}, created_by=created_by, snapshot=snapshot,
            base_version=base_version, parent_run=parent_run,
        )
        if enqueue:
            transaction.on_commit(lambda: run_training_job.enqueue(run.pk))
    return run


def request_cancel(*, run: TrainingRun) -> TrainingRun:
    """Ask a run to stop. A queued run is cancelled at once; a running one stops at its next step."""
    with transaction.atomic():
        if TrainingRun.objects.filter(pk=run.pk, state=TrainingRun.State.QUEUED).update(
            state=TrainingRun.State.CANCELLED, cancel_requested=True, finished_at=timezone.now()
        ):
            return TrainingRun.objects.get(pk=run.pk)
        if not TrainingRun.objects.filter(pk=run.pk, state=TrainingRun.State.RUNNING).update(cancel_requested=True):
            raise Conflict(RUN_ALREADY_FINISHED)
    return TrainingRun.objects.get(pk=run.pk)


def start_run(*, run_id: int) -> bool:
    """Claim a queued run for this worker; False if another worker has it or it was cancelled."""
    now = timezone.now()
    return bool(
        TrainingRun.objects.filter(pk=run_id, state=TrainingRun.State.QUEUED).update(
            state=TrainingRun.State.RUNNING, started_at=now, heartbeat_at=now
        )
    )


def beat(*, run_id: int, progress: float | None = None) -> bool:
    """Record that the worker is alive; returns True when someone asked the run to stop."""
    changes = {"heartbeat_at": timezone.now()}
    if progress is not None:
        changes["progress"] = max(0.0, min(1.0, progress))
    TrainingRun.objects.filter(pk=run_id, state=TrainingRun.State.RUNNING).update(**changes)
    return TrainingRun.objects.filter(pk=run_id, cancel_requested=True).exists()


def append_log(*, run_id: int, line: str) -> None:
    stamp = timezone.now().strftime("%H:%M:%S")
    TrainingRun.objects.filter(pk=run_id).update(log=Concat(F("log"), Value(f"{stamp} {line}\n")))


def _json_number(value):
    """Metrics are JSON: NaN and infinities (which PostgreSQL's jsonb refuses) are kept as strings."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    value = float(value)
    return value if math.isfinite(value) else str(value)


def record_step(*, run_id: int, step: int, metrics: dict, progress: float | None = None) -> bool:
    """Append one step's metrics (a flat dict) and beat; returns True when cancellation was requested."""
    # Only the run's own worker writes its metrics, so read-append-write needs no lock.
    current = TrainingRun.objects.filter(pk=run_id).values_list("metrics", flat=True).first() or []
    clean = {k: _json_number(v) for k, v in metrics.items()}
    current.append({"step": step, **clean})
    TrainingRun.objects.filter(pk=run_id).update(metrics=current)
    return beat(run_id=run_id, progress=progress)


def finish_run(
    *, run_id: int, state: str, summary: dict | None = None, error: str = "",
    produced_version: ModelVersion | None = None,
) -> None:
    from core.events import announce

    with transaction.atomic():
        TrainingRun.objects.filter(pk=run_id).update(
            state=state, summary=summary or {}, error=error[-LOG_LIMIT_CHARS:], produced_version=produced_version,
            finished_at=timezone.now(), progress=1.0 if state == TrainingRun.State.SUCCEEDED else F("progress"),
        )
        run = TrainingRun.objects.select_related("project").get(pk=run_id)
        event = "retrain.finished" if run.kind == TrainingRun.Kind.RETRAIN else "run.finished"
        announce(event=event, project=run.project, payload={
            "run": run.pk, "kind": run.kind, "state": state, "project": run.project.slug,
            "produced_version": produced_version.pk if produced_version else None,
        })


def fail_stale_runs(*, stale_after_seconds: int | None = None) -> int:
    """Mark runs whose worker stopped beating as failed (a killed worker never leaves 'running' behind)."""
    stale_after = stale_after_seconds or settings.RUN_STALE_AFTER_SECONDS
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    return TrainingRun.objects.filter(state=TrainingRun.State.RUNNING, heartbeat_at__lt=cutoff).update(
        state=TrainingRun.State.FAILED, finished_at=timezone.now(),
        error=f"The worker stopped sending heartbeats for over {stale_after} s (killed or crashed); "
        "nothing was registered. Start the run again.",
    )


@transaction.atomic
def register_model_version(
    *, project, name: str, kind: str, path: str, sha256: str, config: dict, metrics: dict,
    parent: ModelVersion | None = None, reward_model: ModelVersion | None = None,
    snapshot: PreferenceSnapshot | None = None, status: str = ModelVersion.Status.CANDIDATE,
) -> ModelVersion:
    version = ModelVersion(
        project=project, name=name, kind=kind, path=path, sha256=sha256, config=config, metrics=metrics,
        parent=parent, reward_model=reward_model, snapshot=snapshot, status=status,
    )
    version.full_clean()
    version.save()
    from core.models import AuditEvent
    from core.audit import record_audit
    from core.events import announce

    record_audit(actor=None, event_type=AuditEvent.Type.VERSION_REGISTERED, project=project,
                 target=f"model_version:{version.pk}", extra={"name": version.name, "kind": version.kind, "status": status})

    announce(event="model_version.registered", project=project, payload={
        "model_version": version.pk, "name": version.name, "kind": version.kind, "sha256": version.sha256,
        "snapshot": snapshot.pk if snapshot else None, "parent": parent.pk if parent else None,
    })
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


def queue_demo_sampling(*, project) -> TrainingRun | None:
    """Queue one publish run that samples completions for the demo's prompts without any (once)."""
    from training import selectors

    if selectors.active_policy(project=project) is None:
        return None
    if TrainingRun.objects.filter(project=project, kind=TrainingRun.Kind.PUBLISH).exists():
        return None
    return create_run(project=project, kind=TrainingRun.Kind.PUBLISH, config={"prompts": "without_completions"})




def start_training(*, project, kind: str, config: dict | None, created_by=None) -> TrainingRun:
    """Validate the trainer's settings now (a 400 naming the setting), then queue the run."""
    import warnings

    from django.core.exceptions import ValidationError

    from core.models import AuditEvent
    from core.audit import record_audit
    from training import jobs

    with warnings.catch_warnings(record=True) as caught:  # e.g. a PPO clip range outside 0.1–0.3
        warnings.simplefilter("always")
        try:
            normalised = jobs.validate_config(kind, config or {})
        except (TypeError, ValueError) as exc:
            raise ValidationError({"config": str(exc)}) from None
    with transaction.atomic():
        run = create_run(project=project, kind=kind, config=normalised, created_by=created_by)
        for warning in caught:
            append_log(run_id=run.pk, line=f"warning: {warning.message}")
        record_audit(actor=created_by, event_type=AuditEvent.Type.RUN_STARTED, project=project, target=f"run:{run.pk}",
                     extra={"kind": kind, "warnings": [str(w.message) for w in caught]})
    run.refresh_from_db(fields=["log"])
    return run


_SCORERS: dict[str, object] = {}


def score_with_reward_model(*, version: ModelVersion, items: list[dict]) -> list[float]:
    """Score (prompt, completion) pairs with a registered reward model (loaded once per process)."""
    from core.exceptions import ApplicationError
    from training.pipeline.reward import RewardScorer

    from training.pipeline.models import TamperedModelError, manifest_sha256

    if version.kind != ModelVersion.Kind.REWARD:
        raise ApplicationError("Only reward models can score; this version is a policy.")
    scorer = _SCORERS.get(version.sha256)
    if scorer is None:
        try:
            if manifest_sha256(version.path) != version.sha256:
                raise TamperedModelError(f"{version.path}: manifest.json differs from the one registered")
            scorer = _SCORERS[version.sha256] = RewardScorer(version.path)
        except (TamperedModelError, FileNotFoundError) as exc:
            raise ApplicationError(f"The files of {version.name} fail their integrity check and were not loaded: {exc}",
                                   status_code=409) from None
    return [float(x) for x in scorer.score([i["prompt"] for i in items], [i["completion"] for i in items])]


def retrain_if_due(*, now=None, agreement_fn=None) -> list[TrainingRun]:
    """Start a retrain chain for every project whose schedule is due. Idempotent.

    Due: N new judgements since the last retrain, or T hours passed with at least one new judgement,
    and the recent judgements' agreement at or above the schedule's threshold. Two workers calling
    this at once start one run: the schedule row is locked (SQLite: the IMMEDIATE transaction) and
    advanced with a conditional UPDATE.
    """
    from feedback.models import Judgement
    from training.models import RetrainSchedule

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
                    config={"method": schedule.method, "steps": schedule.config, "trigger": {
                        "new_judgements": new_count, "agreement": agreement, "hours_passed": bool(hours_passed)}},
                ))
    return started


def project_pairwise_agreement(*, project, last_n: int = 2000) -> float | None:
    """Mean agreement of recent consensus pairs (None when no pair has two judges yet)."""
    from feedback import exports

    return exports.recent_agreement(project=project, last_n=last_n)


def record_published(*, project, run: TrainingRun, policy: ModelVersion, tasks: int) -> None:
    from core.models import AuditEvent
    from core.audit import record_audit

    record_audit(actor=run.created_by, event_type=AuditEvent.Type.SAMPLES_PUBLISHED, project=project,
                 target=f"run:{run.pk}", extra={"policy": policy.name, "tasks": tasks})


@transaction.atomic
def activate_policy(*, version: ModelVersion, project=None, actor=None, rollback: bool = False) -> ModelVersion:
    """Make `version` the policy that samples for `project` (default: its own). Also the way to roll back.

    The project's other active policies retire. Rolling back to a project-less default policy just
    retires the project's own, so the default samples for it again.
    """
    from core.models import AuditEvent
    from core.audit import record_audit

    if version.kind != ModelVersion.Kind.POLICY:
        raise ValueError("only policies can be activated")
    project = project or version.project
    if project is None:
        raise ValueError("name the project whose policy this becomes")
    ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.POLICY,
                                status=ModelVersion.Status.ACTIVE).exclude(pk=version.pk).update(status=ModelVersion.Status.RETIRED)
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.ACTIVE)
    version.refresh_from_db()
    if rollback:  # activation right after training is part of its registration, already recorded
        record_audit(actor=actor, event_type=AuditEvent.Type.POLICY_ROLLED_BACK, project=project,
                     target=f"model_version:{version.pk}", extra={"name": version.name})
    return version
