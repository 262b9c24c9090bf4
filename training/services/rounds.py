"""Iterative-DPO rounds: start one, record what it sampled and published, finish it once people have judged
their share (queueing its DPO run), and end it. The runs do the work (`training.runners.rounds`); these are the writes.


A project has at most one open round (sampling, waiting for judgements or training) at a time. Opening a round,
finishing it (its DPO run queued), a refused finish, abandoning it and its end each write an audit row (target
`dpo_round:<id>`). A round whose judgements never come is abandoned by an admin, which frees the project.
"""

from __future__ import annotations

import math

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import record_audit
from core.exceptions import Conflict
from core.models import AuditEvent
from feedback import services as feedback_services
from training import selectors
from training.models import DPORound, TrainingRun
from training.run_configs import validate_config
from training.services.runs import record_run_start

ROUND_OPEN = "DPO round {round} of this project is still {state}: finish it first."
ROUND_NOT_JUDGED = ("DPO round {round} waits for judgements: {done} of {total} of its tasks are complete, and it "
                    "needs {needed} (min_human_judged {share:g}) before DPO can train.")
ROUND_NOT_WAITING = "DPO round {round} is {state}, not waiting for judgements: there is nothing to finish."
ROUND_NOT_ABANDONABLE = ("DPO round {round} is {state}: only a round waiting for judgements can be abandoned{hint}.")
ABANDON_HINT_SAMPLING = " (cancel its sampling run {run} instead: the round then fails)"
ROUND_ABANDONED = "abandoned by {who}: {reason}"
NO_REASON = "no reason given"
REASON_LIMIT = 500
REASON_INVALID = f"The reason is text of at most {REASON_LIMIT} characters, without NUL characters."
NO_POLICY = "no active policy to sample from: run `manage.py bootstrap_models` first"
NO_REWARD_MODEL = "no active reward model for this project yet: train one first (train_reward_model)"


def start_dpo_round(*, project, config: dict | None, created_by=None, enqueue: bool = True) -> DPORound:
    """A new round and its sampling run (queued after commit unless `enqueue` is off). Refused (409) while the
    project has an open round; bad settings are a ValidationError naming the setting."""
    try:
        with transaction.atomic():
            _refuse_if_open(project)
            run = record_run_start(project=project, kind=TrainingRun.Kind.DPO_ROUND, config=config,
                                   created_by=created_by, enqueue=enqueue)
            try:
                return open_round_for(run=run)
            except ValueError as exc:  # nothing to sample from or score with: the run is not kept either
                raise ValidationError({"project": str(exc)}) from None
    except IntegrityError:  # a concurrent start won the race (one_open_dpo_round_per_project); nothing was kept
        _refuse_if_open(project)
        raise


def _refuse_if_open(project) -> None:
    current = selectors.open_round(project=project)
    if current is not None:
        raise Conflict(ROUND_OPEN.format(round=current.pk, state=current.get_state_display().lower()))


def open_round_for(*, run: TrainingRun) -> DPORound:
    """The round a sampling run serves: created here (with the project's active policy and reward model) and named
    in the run's settings. Raises ValueError when there is nothing to sample from or score with."""
    settings = validate_config(TrainingRun.Kind.DPO_ROUND, run.config)
    policy = selectors.active_policy(project=run.project)
    reward = selectors.newest_reward_model(project=run.project)
    if policy is None:
        raise ValueError(NO_POLICY)
    if reward is None:
        raise ValueError(NO_REWARD_MODEL)
    with transaction.atomic():
        dpo_round = DPORound.objects.create(
            project=run.project, policy=policy, reward_model=reward, k=settings["completions_per_prompt"],
            budget=settings["budget"], config=settings, sample_run=run, created_by=run.created_by)
        run.config = {**settings, "round": dpo_round.pk}
        TrainingRun.objects.filter(pk=run.pk).update(config=run.config)
        record_audit(actor=run.created_by, event_type=AuditEvent.Type.DPO_ROUND_OPENED, project=run.project,
                     target=_target(dpo_round), extra={"run": run.pk, "policy": policy.pk, "reward_model": reward.pk,
                                                       "k": dpo_round.k, "budget": dpo_round.budget})
    return dpo_round


def _target(dpo_round: DPORound) -> str:
    return f"dpo_round:{dpo_round.pk}"


@transaction.atomic
def record_round_sampled(*, dpo_round: DPORound, tasks: list, counts: dict, rows_path: str) -> DPORound:
    """The round's published tasks, its counts and where the reward model's rows are: now it waits for people."""
    dpo_round.tasks.set(tasks)
    dpo_round.counts = {**dpo_round.counts, **counts}
    dpo_round.rows_path = rows_path
    dpo_round.state = DPORound.State.WAITING
    dpo_round.save(update_fields=["counts", "rows_path", "state"])
    return dpo_round


def human_share_needed(dpo_round: DPORound, total: int) -> int:
    return math.ceil(total * float(dpo_round.config.get("min_human_judged", 1.0)) - 1e-9)


def check_judged(*, dpo_round: DPORound) -> None:
    """Conflict (409) naming the counts when the round is not waiting, or its human share is not judged yet."""
    if dpo_round.state != DPORound.State.WAITING:
        raise Conflict(ROUND_NOT_WAITING.format(round=dpo_round.pk, state=dpo_round.get_state_display().lower()))
    done, total = selectors.round_judged(dpo_round=dpo_round)
    needed = human_share_needed(dpo_round, total)
    if done < needed:
        raise Conflict(ROUND_NOT_JUDGED.format(round=dpo_round.pk, done=done, total=total, needed=needed,
                                               share=dpo_round.config.get("min_human_judged", 1.0)))


def finish_dpo_round(*, dpo_round: DPORound, actor=None, enqueue: bool = True,
                     audit_refusal: bool = True) -> TrainingRun:
    """Queue the round's DPO run once its human share is judged (else Conflict, nothing changed but the audit row
    of the refusal; the maintenance tick, which asks every tick, passes `audit_refusal=False`)."""
    try:
        with transaction.atomic():
            locked = DPORound.objects.select_for_update().get(pk=dpo_round.pk)
            check_judged(dpo_round=locked)
            run = record_run_start(project=locked.project, kind=TrainingRun.Kind.DPO_ROUND,
                                   config={**locked.config, "round": locked.pk}, created_by=actor, enqueue=enqueue)
            done, total = selectors.round_judged(dpo_round=locked)
            DPORound.objects.filter(pk=locked.pk).update(
                state=DPORound.State.TRAINING, train_run=run, counts={**locked.counts, "tasks_complete": done})
            record_audit(actor=actor, event_type=AuditEvent.Type.DPO_ROUND_FINISHED, project=locked.project,
                         target=_target(locked), extra={"run": run.pk, "tasks_complete": done, "tasks": total})
    except Conflict as exc:
        if audit_refusal:
            _audit_refusal(dpo_round, actor, exc)
        raise
    return run


def _audit_refusal(dpo_round: DPORound, actor, exc: Conflict) -> None:
    """Written after the refused change rolled back, in a transaction of its own, so the refusal is on record."""
    record_audit(actor=actor, event_type=AuditEvent.Type.DPO_ROUND_FINISH_REFUSED, project=dpo_round.project,
                 target=_target(dpo_round), extra={"state": dpo_round.state, "reason": exc.message})


def advance_dpo_round(*, project, config: dict | None = None, actor=None, enqueue: bool = True
                      ) -> tuple[DPORound, TrainingRun]:
    """One click or one command: finish the project's waiting round when its human share is judged, else start a
    new round. (the round, the run started). Conflict when a round is open and cannot move on yet."""
    current = selectors.open_round(project=project)
    if current is None:
        dpo_round = start_dpo_round(project=project, config=config, created_by=actor, enqueue=enqueue)
        return dpo_round, dpo_round.sample_run
    if current.state != DPORound.State.WAITING:
        refused = Conflict(ROUND_OPEN.format(round=current.pk, state=current.get_state_display().lower()))
        _audit_refusal(current, actor, refused)
        raise refused
    run = finish_dpo_round(dpo_round=current, actor=actor, enqueue=enqueue)
    return DPORound.objects.get(pk=current.pk), run


def abandon_dpo_round(*, dpo_round: DPORound, actor=None, reason: str = "") -> DPORound:
    """End a round that waits for judgements which will not come: it fails with who abandoned it and why, its open
    comparison tasks are cancelled (annotators stop getting them; judged tasks and every judgement are kept) and an
    audit row is written, in one transaction. Conflict (409) naming the state for any other round: a sampling one
    is stopped by cancelling its run, a training one by cancelling its DPO run, and a finished one is over."""
    reason = (reason or "").strip() if isinstance(reason, str | None) else None
    if reason is None or len(reason) > REASON_LIMIT or "\x00" in reason:
        raise ValidationError({"reason": REASON_INVALID})
    reason = reason or NO_REASON
    with transaction.atomic():
        locked = DPORound.objects.select_for_update().select_related("project").get(pk=dpo_round.pk)
        if locked.state != DPORound.State.WAITING:
            hint = ABANDON_HINT_SAMPLING.format(run=locked.sample_run_id) if (
                locked.state == DPORound.State.SAMPLING and locked.sample_run_id) else ""
            raise Conflict(ROUND_NOT_ABANDONABLE.format(round=locked.pk, state=locked.get_state_display().lower(),
                                                        hint=hint))
        error = ROUND_ABANDONED.format(who=actor.get_username() if actor else "an operator (manage.py)",
                                       reason=reason)
        task_ids = list(locked.tasks.values_list("pk", flat=True))
        cancelled = feedback_services.cancel_tasks(task_ids=task_ids)
        done, total = selectors.round_judged(dpo_round=locked)
        DPORound.objects.filter(pk=locked.pk).update(
            state=DPORound.State.FAILED, error=error, finished_at=timezone.now(),
            counts={**locked.counts, "tasks_complete": done, "tasks_cancelled": cancelled})
        record_audit(actor=actor, event_type=AuditEvent.Type.DPO_ROUND_ABANDONED, project=locked.project,
                     target=_target(locked), extra={"reason": reason, "tasks": total, "tasks_complete": done,
                                                    "tasks_cancelled": cancelled})
    locked.refresh_from_db()
    return locked


def end_round(*, dpo_round: DPORound, state: str, counts: dict | None = None, error: str = "",
              snapshot=None) -> None:
    """Close a round: done (a candidate), rejected by the DPO gate, or failed (the audit row has no actor: the
    worker or the maintenance tick ends rounds)."""
    changes = {"state": state, "error": error, "finished_at": timezone.now()}
    with transaction.atomic():
        if counts:
            changes["counts"] = {**DPORound.objects.get(pk=dpo_round.pk).counts, **counts}
        if snapshot is not None:
            changes["snapshot"] = snapshot
        DPORound.objects.filter(pk=dpo_round.pk).update(**changes)
        record_audit(actor=None, event_type=AuditEvent.Type.DPO_ROUND_ENDED, project=dpo_round.project,
                     target=_target(dpo_round), extra={"state": state, "error": error[:500],
                                                       "version": (counts or {}).get("version")})


def finish_judged_rounds() -> dict:
    """The maintenance tick's part: queue DPO for every waiting round whose human share is judged, and fail the
    rounds whose run ended without closing them (a killed worker). Idempotent."""
    finished, failed = [], []
    for dpo_round in DPORound.objects.filter(state=DPORound.State.WAITING).select_related("project"):
        try:
            finish_dpo_round(dpo_round=dpo_round, audit_refusal=False)
        except (Conflict, ValidationError):
            continue
        finished.append(dpo_round.pk)
    stuck = DPORound.objects.filter(
        state__in=[DPORound.State.SAMPLING, DPORound.State.TRAINING]).select_related("sample_run", "train_run")
    for dpo_round in stuck:
        run = dpo_round.train_run if dpo_round.state == DPORound.State.TRAINING else dpo_round.sample_run
        if run is not None and run.is_finished:
            end_round(dpo_round=dpo_round, state=DPORound.State.FAILED,
                      error=run.error or f"its run {run.pk} ended {run.state}")
            failed.append(dpo_round.pk)
    return {"finished": finished, "failed": failed}
