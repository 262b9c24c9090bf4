"""Retraining on a schedule: start a retrain chain for every project that is due, exactly once."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.db import lock_rows
from core.exceptions import ApplicationError
from feedback import selectors as feedback_selectors
from training.models import RetrainSchedule, TrainingRun
from training.run_configs import validate_config
from training.services.starting import start_training

logger = logging.getLogger(__name__)


# --- the retraining schedule ------------------------------------------------------------------------------------


def check_schedule_config(*, method: str, steps: dict) -> dict:
    """The retrain settings a schedule would start, validated now (ValidationError naming the step and setting)."""
    try:
        return validate_config(TrainingRun.Kind.RETRAIN, {"method": method, "steps": steps})
    except (TypeError, ValueError) as exc:
        raise ValidationError(str(exc)) from None


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
            try:  # a schedule stored before its settings had ranges (or by a raw write): refused here, not mid-chain
                check_schedule_config(method=schedule.method, steps=schedule.config)
            except ValidationError as exc:
                logger.warning("retrain schedule of project %s not started: %s", project.slug, " ".join(exc.messages))
                continue
            max_id = new.order_by("-pk").values_list("pk", flat=True).first()
            try:
                with transaction.atomic():  # the schedule advances only together with the run it started
                    advanced = RetrainSchedule.objects.filter(
                        pk=schedule.pk, last_judgement_id=schedule.last_judgement_id,
                    ).update(last_judgement_id=max_id, last_triggered_at=now)
                    if advanced:  # through the one way in: validated, audited, held to the project's queue limit
                        started.append(start_training(project=project, kind=TrainingRun.Kind.RETRAIN, config={
                            "method": schedule.method, "steps": schedule.config, "trigger": {
                                "new_judgements": new_count, "agreement": agreement,
                                "hours_passed": bool(hours_passed)}}))
            except ApplicationError as exc:  # e.g. the project's queue is full: due again at the next tick
                logger.warning("retrain schedule of project %s not started: %s", project.slug, exc.message)
    return started


def project_pairwise_agreement(*, project, last_n: int = 2000) -> float | None:
    """Mean agreement of recent consensus pairs (None when no pair has two judges yet)."""
    return feedback_selectors.recent_agreement(project=project, last_n=last_n)
