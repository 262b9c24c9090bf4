"""Reads that are more than a one-liner. Permission-aware lookups live here so every view agrees."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, F, QuerySet, Sum
from django.http import Http404
from django.utils import timezone

from feedback.models import LABELS, Assignment, ComparisonTask, Completion, Judgement, Membership, Project


def projects_for_user(*, user) -> QuerySet[Project]:
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def get_project_for_user(*, user, project_ref: str | int) -> Project:
    """A project by numeric id or slug, if the user may see it; 404 otherwise (no existence leak)."""
    ref = str(project_ref)
    lookup = {"pk": int(ref)} if ref.isdigit() else {"slug": ref}
    try:
        return projects_for_user(user=user).get(**lookup)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


def role_in_project(*, user, project: Project) -> str | None:
    return project.role_of(user)


def is_project_admin(*, user, project: Project) -> bool:
    return role_in_project(user=user, project=project) == Membership.Role.ADMIN


def can_review(*, user, project: Project) -> bool:
    return role_in_project(user=user, project=project) in {Membership.Role.ADMIN, Membership.Role.REVIEWER}


def labelled_completions(*, assignment: Assignment) -> list[dict]:
    """The completions of a leased task under their anonymous labels, in this annotator's order."""
    texts = dict(Completion.objects.filter(pk__in=assignment.label_order).values_list("id", "text"))
    return [{"label": LABELS[i], "text": texts[cid]} for i, cid in enumerate(assignment.label_order)]


def task_for_annotator(*, user, task_id: int) -> ComparisonTask:
    """A task the user may act on: it must belong to a project they are a member of."""
    try:
        return ComparisonTask.objects.select_related("project").get(
            pk=task_id, project__in=projects_for_user(user=user)
        )
    except ComparisonTask.DoesNotExist:
        raise Http404("No such task.") from None


PROGRESS_CACHE_SECONDS = 30


def judgements_left(*, project: Project) -> int:
    """Judgements still wanted by the project's open tasks; cached briefly because it reads every open task."""
    from django.core.cache import cache

    def compute() -> int:
        open_tasks = ComparisonTask.objects.filter(project=project, status=ComparisonTask.Status.OPEN, is_gold=False)
        return open_tasks.aggregate(left=Sum(F("judgements_needed") - F("judgements_done")))["left"] or 0

    return cache.get_or_set(f"feedback:judgements-left:{project.pk}", compute, PROGRESS_CACHE_SECONDS)


def annotator_progress(*, project: Project, annotator, now: datetime | None = None) -> dict:
    """Done today and in total (from the annotator's own assignments: an index, not the project) and work left."""
    now = now or timezone.now()
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    mine = Assignment.objects.filter(annotator=annotator, project=project, state=Assignment.State.SUBMITTED)
    return {
        "done_today": mine.filter(finished_at__gte=start_of_day).count(),
        "done_total": mine.count(),
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
