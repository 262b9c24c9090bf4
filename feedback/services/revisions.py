"""Revising a judgement: an annotator changes their own ranking, flags, confidence or comment while the
task is still open.

The judgement is updated in place (one judgement per annotator and task stays true; its id, lease and time
spent are kept) and an audit row records the values before and after, in the same transaction. The task's
counters do not move: the number of judgements is unchanged, and an open task's consensus and agreement are
computed from the judgements whenever they are read. Refused once the task is complete or cancelled, once a
reviewer adjudicated it, and once a preference snapshot pinned the judgement (a snapshot stores the rows made
from its judgements, so a pinned judgement must never change).

Revising and snapshotting serialise on the project row: `services.snapshots` locks it for the whole transaction
that pins judgements and stores their rows, and a revision locks it before it looks for a pinning snapshot. So a
revision either commits before a snapshot reads, or waits for the snapshot's commit and is then refused.
"""

from __future__ import annotations

from typing import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction

from core.audit import record_audit
from core.db import lock_rows, retry_transient
from core.exceptions import ApplicationError, Conflict
from core.models import AuditEvent
from feedback.models import Adjudication, Assignment, ComparisonTask, Judgement, PreferenceSnapshot, Project
from feedback.services.queue import (
    COMMENT_LIMIT, COMMENT_TOO_LONG, CONFIDENCE_RANGE, FLAG_UNKNOWN, NUL_NOT_ALLOWED, ranking_to_completion_ids,
)
from feedback.services.review import update_trust_from_gold

NOT_JUDGED = "You have not judged this task, so there is nothing of yours to revise."
TASK_CLOSED = "This task is {status}: its judgements can no longer change."
TASK_ADJUDICATED = "A reviewer adjudicated this task: its judgements can no longer change."
JUDGEMENT_PINNED = "This judgement is part of preference snapshot {pk}: it can no longer change."


def _check_values(*, flags, confidence, comment) -> list[str]:
    if confidence is not None and (isinstance(confidence, bool) or confidence not in range(1, 6)):
        raise ValidationError({"confidence": CONFIDENCE_RANGE})
    if len(comment) > COMMENT_LIMIT:
        raise ValidationError({"comment": COMMENT_TOO_LONG.format(limit=COMMENT_LIMIT)})
    if "\x00" in comment:
        raise ValidationError({"comment": NUL_NOT_ALLOWED})
    flags = list(flags or [])
    for flag in flags:
        if flag not in Judgement.Flag.values:
            raise ValidationError({"flags": FLAG_UNKNOWN.format(flag=flag, allowed=", ".join(Judgement.Flag.values))})
    return sorted(set(flags))  # stored sorted, as submit_judgement stores them


def snapshot_pinning(judgement: Judgement) -> int | None:
    """The id of a (pending or complete) snapshot whose id runs hold this judgement, else None."""
    snapshots = (PreferenceSnapshot.objects.filter(project_id=judgement.task.project_id)
                 .exclude(state=PreferenceSnapshot.State.FAILED).values_list("pk", "judgement_ids"))
    for pk, runs in snapshots.iterator(chunk_size=50):
        if any(first <= judgement.pk <= last for first, last in runs or []):
            return pk
    return None


def _snapshot_of(judgement: Judgement) -> dict:
    return {"ranking": judgement.ranking, "ranking_labels": judgement.ranking_labels, "flags": judgement.flags,
            "confidence": judgement.confidence, "comment": judgement.comment}


@retry_transient
def revise_judgement(
    *, task: ComparisonTask, annotator, ranking, flags: Sequence[str] = (), confidence: int | None = None,
    comment: str = "",
) -> Judgement:
    """Replace the annotator's judgement of an open task with a new ranking (in their own labels) and extras."""
    comment = comment or ""
    flags = _check_values(flags=flags, confidence=confidence, comment=comment)
    with transaction.atomic():
        # The same lock order as submit_judgement (own assignment, then the task row), so the two never deadlock.
        assignment = lock_rows(Assignment.objects.filter(task=task, annotator=annotator)).first()
        judgement = Judgement.objects.filter(task=task, annotator=annotator).select_related("task").first()
        if assignment is None or judgement is None:
            raise ApplicationError(NOT_JUDGED, status_code=403)
        locked = lock_rows(ComparisonTask.objects.filter(pk=task.pk)).get()
        if locked.status != ComparisonTask.Status.OPEN:
            raise Conflict(TASK_CLOSED.format(status=locked.get_status_display().lower()))
        if Adjudication.objects.filter(task=task).exists():
            raise Conflict(TASK_ADJUDICATED)
        # Last in the lock order (assignment, task, project): a snapshot takes only this one, so no cycle.
        lock_rows(Project.objects.filter(pk=locked.project_id)).get()
        pinned = snapshot_pinning(judgement)
        if pinned is not None:
            raise Conflict(JUDGEMENT_PINNED.format(pk=pinned))
        before = _snapshot_of(judgement)
        judgement.ranking = ranking_to_completion_ids(ranking, assignment.label_map())
        judgement.ranking_labels = [[label.lower() for label in ([g] if isinstance(g, str) else g)] for g in ranking]
        judgement.flags, judgement.confidence, judgement.comment = flags, confidence, comment
        judgement.save(update_fields=["ranking", "ranking_labels", "flags", "confidence", "comment"])
        if locked.is_gold:
            update_trust_from_gold(project=locked.project, annotator=annotator)
        record_audit(actor=annotator, event_type=AuditEvent.Type.JUDGEMENT_REVISED, project=locked.project,
                     target=f"judgement:{judgement.pk}",
                     extra={"task": task.pk, "before": before, "after": _snapshot_of(judgement)})
    return judgement
