"""Why no task is waiting for an annotator (a read, selector style), so the empty page can say so truthfully."""

from __future__ import annotations

from django.db.models import Exists, F, Min, OuterRef
from django.utils import timezone

from feedback.models import Assignment, ComparisonTask, Project

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
