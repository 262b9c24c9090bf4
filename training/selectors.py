"""Reads of the training app."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import Http404

from core.permissions import NEEDS_ROLE, REVIEWER, has_project_role, require_project_role
from feedback import selectors as feedback_selectors
from training.models import ModelVersion, TrainingRun


def runs_for_user(*, user) -> QuerySet[TrainingRun]:
    """The runs of the projects the user reviews (annotators watch no runs)."""
    return TrainingRun.objects.filter(project__in=reviewable_projects(user=user)).select_related(
        "project", "produced_version", "snapshot"
    ).prefetch_related("step_metrics")


def run_for_reviewer(*, user, run_id: int) -> TrainingRun:
    """A run the user may watch: reviewers and admins of its project."""
    run = runs_for_user(user=user).filter(pk=run_id).first()
    if run is None or not has_project_role(user=user, project=run.project, role=REVIEWER):
        raise Http404("No such run.")
    return run


def reviewable_projects(*, user) -> list:
    """The projects where the user holds the reviewer role or a higher one (read fresh: a demotion counts at once)."""
    return [p for p in feedback_selectors.projects_for_user(user=user)
            if has_project_role(user=user, project=p, role=REVIEWER)]


def versions_for_user(*, user) -> QuerySet[ModelVersion]:
    """The versions a user may see: those of the projects they review, and the default (project-less) models
    if they review any project. Annotators see none (the registry is reviewers' and admins' business)."""
    projects = reviewable_projects(user=user)
    if not projects and not user.is_superuser:
        return ModelVersion.objects.none()
    visible = ModelVersion.objects.filter(project__isnull=True) | ModelVersion.objects.filter(project__in=projects)
    return visible.select_related("parent", "reward_model", "snapshot", "project")


def version_for_user(*, user, version_id: int) -> ModelVersion:
    """A model version the user may use: 404 when it is missing or its project is not theirs (the same answer),
    403 (PermissionDenied) when they are a member below reviewer."""
    version = ModelVersion.objects.select_related("parent", "reward_model", "snapshot", "project").filter(
        pk=version_id).first()
    if version is None:
        raise Http404("No such model version.")
    if version.project is None:
        if versions_for_user(user=user).filter(pk=version.pk).exists():
            return version
        if feedback_selectors.projects_for_user(user=user).exists():
            raise PermissionDenied(NEEDS_ROLE.format(role=REVIEWER))
        raise Http404("No such model version.")
    feedback_selectors.get_project_for_user(user=user, project_ref=version.project_id)  # 404 for non-members
    require_project_role(user=user, project=version.project, role=REVIEWER)
    return version


def active_policy(*, project) -> ModelVersion | None:
    """The policy that samples for a project: its newest active one, else the default policy."""
    return (
        ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY, status=ModelVersion.Status.ACTIVE, project=project)
        .order_by("-created_at").first()
        or ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY, status=ModelVersion.Status.ACTIVE, project__isnull=True)
        .order_by("-created_at").first()
    )


def promotion_candidates(*, project) -> QuerySet[ModelVersion]:
    """The project's candidate policies (passed their automatic gate, awaiting the annotators' verdict), oldest first."""
    return ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.POLICY,
                                       status=ModelVersion.Status.CANDIDATE).order_by("created_at", "pk")


def newest_candidate(*, project) -> ModelVersion | None:
    """The newest candidate policy (publishing gives every candidate duels; see `promotion_candidates`)."""
    return promotion_candidates(project=project).order_by("-created_at", "-pk").first()


@dataclass(frozen=True)
class HeadToHeadTask:
    """One closed head-to-head task: which of its completions are whose, and its judgements in the order given."""

    task_id: int
    closed_at: object  # the last judgement's time: when the task closed
    candidate_ids: frozenset
    rival_ids: frozenset
    judgements: tuple  # ((annotator username, ranking), …)


def head_to_head_tasks(*, project, candidate: ModelVersion, rival: ModelVersion) -> list[HeadToHeadTask]:
    """The project's closed (complete), non-gold tasks holding completions of both versions, in the order they
    closed (their last judgement; task id breaks a tie). Open tasks wait: a task's score must not change after it
    is counted, or the sequential test would see a past observation move."""
    from feedback.models import ComparisonTask, Judgement

    tasks = (ComparisonTask.objects.filter(project=project, is_gold=False, status=ComparisonTask.Status.COMPLETE,
                                           completions__model_version=candidate)
             .filter(completions__model_version=rival))  # two joins: tasks holding both versions
    task_ids = set(tasks.values_list("pk", flat=True))
    owner: dict[int, dict[int, int]] = {}
    links = ComparisonTask.completions.through.objects.filter(
        comparisontask_id__in=task_ids, completion__model_version__in=(candidate.pk, rival.pk))
    for task_id, cid, version_id in links.values_list("comparisontask_id", "completion_id", "completion__model_version"):
        owner.setdefault(task_id, {})[cid] = version_id
    judged: dict[int, list] = {}
    closed: dict[int, object] = {}
    rows = (Judgement.objects.filter(task__in=task_ids).order_by("created_at", "pk")
            .values_list("task", "annotator__username", "ranking", "created_at"))
    for task_id, username, ranking, created_at in rows.iterator():
        judged.setdefault(task_id, []).append((username, ranking))
        closed[task_id] = created_at
    order = sorted(judged, key=lambda t: (closed[t], t))
    return [HeadToHeadTask(task_id=t, closed_at=closed[t],
                           candidate_ids=frozenset(c for c, v in owner.get(t, {}).items() if v == candidate.pk),
                           rival_ids=frozenset(c for c, v in owner.get(t, {}).items() if v == rival.pk),
                           judgements=tuple(judged[t])) for t in order]


def newest_reward_model(*, project, exclude: ModelVersion | None = None) -> ModelVersion | None:
    """The project's newest active reward model (other than `exclude`): what PPO optimises against and
    publishing ranks prompts by; the one before it is PPO's held-out judge."""
    versions = ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.REWARD, status=ModelVersion.Status.ACTIVE)
    if exclude is not None:
        versions = versions.exclude(pk=exclude.pk)
    return versions.order_by("-created_at", "-pk").first()


def run_metrics(*, run: TrainingRun) -> list[dict]:
    """The run's logged steps in order, one flat dict each: [{"step": 1, "loss": 0.7, …}, …]."""
    return [row.as_row() for row in run.step_metrics.all()]


def metric_series(*, run: TrainingRun) -> dict[str, list]:
    """Metric name → [[step, value], …] for every numeric metric the run logged (the run page's curves)."""
    series: dict[str, list] = {}
    for row in run.step_metrics.all():
        for name, value in row.metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(name, []).append([row.step, value])
    return series


def lineage(*, version: ModelVersion) -> list[ModelVersion]:
    """The chain of parents, newest first."""
    chain, seen = [], set()
    while version is not None and version.pk not in seen:
        chain.append(version)
        seen.add(version.pk)
        version = version.parent
    return chain


def log_tail(*, run: TrainingRun, lines: int = 40) -> str:
    return "\n".join(run.log.splitlines()[-lines:])


# --- iterative-DPO rounds ------------------------------------------------------------------------------------------


def rounds_for_user(*, user):
    """The DPO rounds of the projects the user reviews."""
    from training.models import DPORound

    return DPORound.objects.filter(project__in=reviewable_projects(user=user)).select_related(
        "project", "policy", "reward_model", "sample_run", "train_run__produced_version")


def round_for_reviewer(*, user, round_id: int):
    dpo_round = rounds_for_user(user=user).filter(pk=round_id).first()
    if dpo_round is None or not has_project_role(user=user, project=dpo_round.project, role=REVIEWER):
        raise Http404("No such round.")
    return dpo_round


def open_round(*, project):
    """The project's round that is not finished (sampling, waiting for judgements or training), if any."""
    from training.models import DPORound

    return DPORound.objects.filter(project=project, state__in=DPORound.OPEN_STATES).order_by("-pk").first()


def round_judged(*, dpo_round) -> tuple[int, int]:
    """(the round's tasks that are complete, all its tasks)."""
    from feedback.models import ComparisonTask

    tasks = dpo_round.tasks.all()
    return tasks.filter(status=ComparisonTask.Status.COMPLETE).count(), tasks.count()


def round_of_run(*, run: TrainingRun):
    """The DPO round a `dpo_round` run sampled or trained for, or None."""
    from training.models import DPORound

    if run.kind != TrainingRun.Kind.DPO_ROUND:
        return None
    return DPORound.objects.filter(models.Q(sample_run=run) | models.Q(train_run=run)).first()
