"""Reads of the annotate page: the leased task's completions under their labels, the annotator's progress,
and why no task is waiting (so the empty page can say so truthfully)."""

from __future__ import annotations

from datetime import datetime

from django.core.cache import cache
from django.db.models import Count, Exists, F, Min, OuterRef, Q, Sum
from django.utils import timezone

from feedback.models import LABELS, Assignment, ComparisonTask, Completion, Project


def assignment_of(*, task: ComparisonTask, annotator) -> Assignment | None:
    return Assignment.objects.filter(task=task, annotator=annotator).first()


def labelled_completions(*, assignment: Assignment) -> list[dict]:
    """The completions of a leased task under their anonymous labels, in this annotator's order.

    A fresh lease already carries the texts (`completion_texts`, read with its completion ids): no query then."""
    texts = getattr(assignment, "completion_texts", None)
    if texts is None:
        texts = dict(Completion.objects.filter(pk__in=assignment.label_order).values_list("id", "text"))
    return [{"label": LABELS[i], "text": texts[cid]} for i, cid in enumerate(assignment.label_order)]


PROGRESS_CACHE_SECONDS = 30


def judgements_left(*, project: Project) -> int:
    """Judgements still wanted by the project's open tasks; cached briefly because it reads every open task."""

    def compute() -> int:
        open_tasks = ComparisonTask.objects.filter(project=project, status=ComparisonTask.Status.OPEN, is_gold=False)
        return open_tasks.aggregate(left=Sum(F("judgements_needed") - F("judgements_done")))["left"] or 0

    return cache.get_or_set(f"feedback:judgements-left:{project.pk}", compute, PROGRESS_CACHE_SECONDS)


def forget_judgements_left(*, project: Project) -> None:
    """Drop the cached count after a judgement, so the annotator's next page shows it at once."""
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


# --- nothing waiting --------------------------------------------------------------------------------------------

NO_TASKS, HELD, COMPLETE, ALL_SEEN = "no_tasks", "held", "complete", "all_seen"


def why_nothing_waiting(*, project: Project, annotator) -> dict:
    """{"reason": one of NO_TASKS, HELD, COMPLETE, ALL_SEEN, "judged": judgements of this annotator here,
    "skipped": tasks they skipped, "free_at": when the first lease held by others ends (HELD only)}."""
    tasks = ComparisonTask.objects.filter(project=project, is_gold=False)
    mine = Assignment.objects.filter(project=project, annotator=annotator)
    answer = {"judged": mine.filter(state=Assignment.State.SUBMITTED).count(),
              "skipped": mine.filter(state=Assignment.State.SKIPPED).count(), "free_at": None,
              "prompts": project.prompts.count()}
    if not tasks.exists():
        return {**answer, "reason": NO_TASKS}
    open_tasks = tasks.filter(status=ComparisonTask.Status.OPEN)
    unseen = open_tasks.filter(~Exists(Assignment.objects.filter(task=OuterRef("pk"), annotator=annotator)))
    held = unseen.filter(slots_taken__gte=F("judgements_needed"))
    if held.exists():
        free_at = Assignment.objects.filter(task__in=held, state=Assignment.State.LEASED,
                                            leased_until__gt=timezone.now()).aggregate(t=Min("leased_until"))["t"]
        return {**answer, "reason": HELD, "free_at": free_at}
    if not open_tasks.exists():
        return {**answer, "reason": COMPLETE}
    return {**answer, "reason": ALL_SEEN}
