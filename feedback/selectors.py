"""Reads that are more than a one-liner. Permission-aware lookups live here so every view agrees."""

from __future__ import annotations

from datetime import datetime

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
    if user.is_superuser:
        return Membership.Role.ADMIN
    return Membership.objects.filter(user=user, project=project).values_list("role", flat=True).first()


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


def annotator_progress(*, project: Project, annotator, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    mine = Judgement.objects.filter(annotator=annotator, task__project=project)
    open_tasks = ComparisonTask.objects.filter(project=project, status=ComparisonTask.Status.OPEN)
    left = open_tasks.aggregate(left=Sum(F("judgements_needed") - F("judgements_done")))["left"] or 0
    return {
        "done_today": mine.filter(created_at__gte=start_of_day).count(),
        "done_total": mine.count(),
        "judgements_left_in_project": left,
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
