"""Reads that are more than a one-liner. Permission-aware lookups live here so every view agrees."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db.models import Count, F, Q, QuerySet, Sum
from django.http import Http404
from django.utils import timezone

from core.permissions import (
    ADMIN, REVIEWER, has_project_role, limit_to_token_scope, remember_role, role_in, token_scope, within_token_scope,
)
from feedback import quality, selectors_sql
from feedback.models import (
    LABELS, Adjudication, Assignment, ComparisonTask, Completion, Judgement, Membership, PreferenceSnapshot, Project,
    Prompt,
)

MAX_JUDGEMENTS_ANALYSED = 200_000


def projects_for_user(*, user) -> QuerySet[Project]:
    """The user's projects, as far as the request's credentials reach (a scoped API token: its projects only)."""
    if user.is_superuser:
        return limit_to_token_scope(Project.objects.all(), user=user)
    return limit_to_token_scope(Project.objects.filter(memberships__user=user).distinct(), user=user)


PROJECT_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")


def get_project_for_user(*, user, project_ref: str | int) -> Project:
    """A project by numeric id or slug, if the user may see it; 404 otherwise (no existence leak).

    One query: the membership is joined (no DISTINCT: a user has one membership per project) and the user's role
    comes back with the project, so the permission checks of this request need no second lookup (see
    core.permissions.remember_role)."""
    ref = str(project_ref)
    # Only ASCII ids of up to 18 digits or slugs reach the database: anything else (NUL bytes, which PostgreSQL
    # refuses in text, Arabic-Indic digits, 64+ characters) cannot name a project and gets the same 404.
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:
        lookup = {"pk": int(ref)}
    elif PROJECT_SLUG.fullmatch(ref):
        lookup = {"slug": ref}
    else:
        raise Http404("No such project.")
    if not getattr(user, "is_authenticated", False):
        raise Http404("No such project.")
    if user.is_superuser:
        project, role = Project.objects.filter(**lookup).first(), ADMIN
    else:
        project, role = selectors_sql.member_project(user_id=user.pk, **lookup) or (None, None)
    if project is None or not within_token_scope(user=user, project_id=project.pk):
        raise Http404("No such project.")
    remember_role(project=project, user=user, role=role)
    return project


def may_create_projects(*, user) -> bool:
    """Superusers, and admins of at least one project (they become the new project's admin); never by
    `is_staff` or a Django model permission alone."""
    if not getattr(user, "is_authenticated", False) or token_scope(user) is not None:
        return False  # a token minted by someone else acts inside its projects only: it creates none
    return user.is_superuser or Membership.objects.filter(user=user, role=Membership.Role.ADMIN).exists()


def role_in_project(*, user, project: Project) -> str | None:
    return role_in(project=project, user=user)






def assignment_of(*, task: ComparisonTask, annotator) -> Assignment | None:
    return Assignment.objects.filter(task=task, annotator=annotator).first()


def project_by_slug(*, slug: str) -> Project | None:
    return Project.objects.filter(slug=slug).first()


def labelled_completions(*, assignment: Assignment) -> list[dict]:
    """The completions of a leased task under their anonymous labels, in this annotator's order.

    A fresh lease already carries the texts (`completion_texts`, read with its completion ids): no query then."""
    texts = getattr(assignment, "completion_texts", None)
    if texts is None:
        texts = dict(Completion.objects.filter(pk__in=assignment.label_order).values_list("id", "text"))
    return [{"label": LABELS[i], "text": texts[cid]} for i, cid in enumerate(assignment.label_order)]


def task_for_annotator(*, user, task_id: int) -> ComparisonTask:
    """A task the user may act on: it must belong to a project they are a member of (one join, no subquery).
    The caller's role comes back with it and serves this request's permission checks on `task.project`."""
    if user.is_superuser:
        task, role = ComparisonTask.objects.select_related("project").filter(pk=task_id).first(), ADMIN
    else:
        task, role = selectors_sql.member_task(user_id=user.pk, task_id=task_id) or (None, None)
    if task is None or not within_token_scope(user=user, project_id=task.project_id):
        raise Http404("No such task.")
    remember_role(project=task.project, user=user, role=role)
    return task


PROGRESS_CACHE_SECONDS = 30


def judgements_left(*, project: Project) -> int:
    """Judgements still wanted by the project's open tasks; cached briefly because it reads every open task."""
    from django.core.cache import cache

    def compute() -> int:
        open_tasks = ComparisonTask.objects.filter(project=project, status=ComparisonTask.Status.OPEN, is_gold=False)
        return open_tasks.aggregate(left=Sum(F("judgements_needed") - F("judgements_done")))["left"] or 0

    return cache.get_or_set(f"feedback:judgements-left:{project.pk}", compute, PROGRESS_CACHE_SECONDS)


def forget_judgements_left(*, project: Project) -> None:
    """Drop the cached count after a judgement, so the annotator's next page shows it at once."""
    from django.core.cache import cache

    cache.delete(f"feedback:judgements-left:{project.pk}")


def annotator_progress(*, project: Project, annotator, now: datetime | None = None) -> dict:
    """Done today and in total (from the annotator's own assignments: an index, not the project) and work left."""
    now = now or timezone.now()
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    mine = Assignment.objects.filter(annotator=annotator, project=project, state=Assignment.State.SUBMITTED)
    done = mine.aggregate(total=Count("id"), today=Count("id", filter=Q(finished_at__gte=start_of_day)))  # one read
    return {
        "done_today": done["today"],
        "done_total": done["total"],
        "judgements_left_in_project": judgements_left(project=project),
    }


def project_stats(*, project: Project) -> dict:
    tasks = ComparisonTask.objects.filter(project=project)
    by_status = dict(
        tasks.values("status").annotate(n=Count("id")).values_list("status", "n")
    )
    totals = tasks.aggregate(needed=Sum("judgements_needed"), done=Sum("judgements_done"))
    needed, done = totals["needed"] or 0, totals["done"] or 0
    return {
        "tasks_total": sum(by_status.values()),
        "tasks_open": by_status.get(ComparisonTask.Status.OPEN, 0),
        "tasks_complete": by_status.get(ComparisonTask.Status.COMPLETE, 0),
        "judgements_done": done,
        "judgements_needed": needed,
        "progress": (done / needed) if needed else 0.0,
        "annotators": Membership.objects.filter(project=project).count(),
        "prompts_without_tasks": project.prompts.filter(tasks__isnull=True).count(),
    }


def judgements_per_hour(*, project: Project, hours: int = 72) -> list[tuple[str, int]]:
    from django.db.models.functions import TruncHour

    since = timezone.now() - timedelta(hours=hours)
    rows = (
        Judgement.objects.filter(task__project=project, created_at__gte=since)
        .annotate(hour=TruncHour("created_at")).values("hour").annotate(n=Count("id")).order_by("hour")
    )
    return [(row["hour"].strftime("%Y-%m-%d %H:00"), row["n"]) for row in rows]


def annotator_throughput(*, project: Project) -> list[dict]:
    from django.db.models import Avg

    rows = (
        Judgement.objects.filter(task__project=project).values("annotator__username")
        .annotate(n=Count("id"), seconds=Avg("seconds_spent")).order_by("-n")
    )
    trust = dict(Membership.objects.filter(project=project).values_list("user__username", "trust"))
    return [{"annotator": r["annotator__username"], "judgements": r["n"], "mean_seconds": round(r["seconds"] or 0, 1),
             "trust": trust.get(r["annotator__username"])} for r in rows]


# --- judgements as evidence (dashboard, trust, agreement) -------------------------------------------------------


@dataclass
class JudgementEvidence:
    """The project's recent judgements as plain data for `feedback.quality`."""

    rows: list  # (judgement id, task id, annotator username, ranking, created_at), newest first
    gold: dict  # gold task id -> known ranking
    trust: dict  # username -> trust
    by_task: dict = field(default_factory=dict)  # non-gold task id -> [(username, ranking, created_at), …]

    def votes_by_task(self) -> dict:
        """{task: [(annotator, ranking), …]} for the quality functions."""
        return {task: [(a, r) for a, r, _ in votes] for task, votes in self.by_task.items()}

    def gold_judgements(self) -> list:
        return [(annotator, task, ranking) for _, task, annotator, ranking, _ in self.rows]


def judgement_evidence(*, project: Project) -> JudgementEvidence:
    rows = list(
        Judgement.objects.filter(task__project=project).order_by("-id")
        .values_list("id", "task_id", "annotator__username", "ranking", "created_at")[:MAX_JUDGEMENTS_ANALYSED]
    )
    gold = dict(ComparisonTask.objects.filter(project=project, is_gold=True).values_list("id", "gold_ranking"))
    trust = dict(Membership.objects.filter(project=project).values_list("user__username", "trust"))
    by_task: dict[int, list] = defaultdict(list)
    for _, task_id, annotator, ranking, created_at in rows:
        if task_id not in gold:
            by_task[task_id].append((annotator, ranking, created_at))
    return JudgementEvidence(rows=rows, gold=gold, trust=trust, by_task=dict(by_task))


def trust_evidence(*, project: Project) -> dict[str, dict[str, int]]:
    """Per annotator: gold pairs right/total and pairs agreeing with the others' consensus/total."""
    data = judgement_evidence(project=project)
    evidence: dict[str, dict[str, int]] = defaultdict(dict)
    for annotator, (hits, n) in quality.agreement_counts(data.votes_by_task(), data.trust).items():
        evidence[annotator].update(agree=hits, agree_total=n)
    for annotator, (hits, n) in quality.gold_counts(data.gold_judgements(), data.gold).items():
        evidence[annotator].update(gold_correct=hits, gold_total=n)
    return dict(evidence)


def gold_judgements_of(*, project: Project, annotator) -> list[tuple]:
    """[(ranking, known ranking)] of the annotator's judgements of gold tasks."""
    return list(Judgement.objects.filter(task__project=project, task__is_gold=True, annotator=annotator)
                .values_list("ranking", "task__gold_ranking"))


def recent_agreement(*, project: Project, last_n: int = 2000) -> float | None:
    """Mean judge agreement over the consensus pairs of the last `last_n` judgements (None: no pair judged twice)."""
    recent = list(
        Judgement.objects.filter(task__project=project, task__is_gold=False).order_by("-id")
        .values_list("task_id", "annotator_id", "ranking")[:last_n]
    )
    trust = dict(Membership.objects.filter(project=project).values_list("user_id", "trust"))
    by_task: dict[int, list] = {}
    for task_id, annotator, ranking in recent:
        by_task.setdefault(task_id, []).append((ranking, trust.get(annotator, 1.0)))
    agreements = [
        pair.agreement for votes in by_task.values() if len(votes) > 1 for pair in quality.consensus_pairs(votes)
    ]
    return sum(agreements) / len(agreements) if agreements else None


# --- what a snapshot holds ---------------------------------------------------------------------------------------

SINCE_SNAPSHOT_UNKNOWN = "No complete snapshot {pk} in this project."


def complete_snapshot(*, project: Project, pk: int) -> PreferenceSnapshot | None:
    """A snapshot that covers its judgements (its files, if any, were written whole)."""
    return PreferenceSnapshot.objects.filter(pk=pk, project=project, state=PreferenceSnapshot.State.COMPLETE).first()


def judgements_in_scope(*, project: Project, only_trusted: bool = False, trust_threshold: float = 0.5,
                        since_snapshot: int | None = None) -> QuerySet[Judgement]:
    """The judgements an export may hold: non-gold, from trusted annotators if asked, newer than a complete snapshot."""
    from django.core.exceptions import ValidationError

    qs = Judgement.objects.filter(task__project=project, task__is_gold=False)
    if only_trusted:
        trusted = Membership.objects.filter(project=project, trust__gte=trust_threshold).values("user_id")
        qs = qs.filter(annotator_id__in=trusted)
    if since_snapshot is not None:
        previous = complete_snapshot(project=project, pk=since_snapshot)
        if previous is None:
            raise ValidationError({"since_snapshot": SINCE_SNAPSHOT_UNKNOWN.format(pk=since_snapshot)})
        qs = qs.filter(pk__gt=previous.counts.get("max_judgement_id", 0))
    return qs


class PromptInfo(NamedTuple):
    pk: int
    key: str  # the external id, else "prompt-<pk>": what the split hashes and rows name
    text: str
    messages: list | None


class CompletionInfo(NamedTuple):
    pk: int
    text: str
    model: str


@dataclass(frozen=True)
class ExportBatch:
    """What the rows of a batch of tasks need, read in a handful of queries."""

    prompt_of_task: dict[int, PromptInfo]
    completions: dict[int, CompletionInfo]
    adjudicated: dict[int, list]
    trust: dict[int, float]


def export_batch(*, project_id: int, task_ids: list[int]) -> ExportBatch:
    prompt_ids = dict(ComparisonTask.objects.filter(pk__in=task_ids).values_list("id", "prompt_id"))
    prompts = {
        pk: PromptInfo(pk, external_id or f"prompt-{pk}", text, messages)
        for pk, external_id, text, messages in
        Prompt.objects.filter(pk__in=set(prompt_ids.values())).values_list("id", "external_id", "text", "messages")
    }
    through = ComparisonTask.completions.through.objects.filter(comparisontask_id__in=task_ids)
    completions = {
        pk: CompletionInfo(pk, text, model)
        for pk, text, model in Completion.objects.filter(pk__in=through.values("completion_id"))
        .values_list("id", "text", "model_name")
    }
    return ExportBatch(
        prompt_of_task={task: prompts[prompt] for task, prompt in prompt_ids.items()},
        completions=completions,
        adjudicated=dict(Adjudication.objects.filter(task_id__in=task_ids).values_list("task_id", "ranking")),
        trust=dict(Membership.objects.filter(project_id=project_id).values_list("user_id", "trust")),
    )


def has_chat_prompts(*, project_id: int) -> bool:
    return Prompt.objects.filter(project_id=project_id, messages__isnull=False).exists()
