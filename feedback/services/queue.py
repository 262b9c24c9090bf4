"""The queue: leasing the next task, judging it, skipping it.

Queue writes are short transactions. On SQLite each transaction takes the write lock when it starts
(IMMEDIATE, see settings), so writers queue instead of failing; on PostgreSQL candidate tasks are
locked with SKIP LOCKED so concurrent annotators never wait on each other's rows. Either way the
unique constraints (one assignment and one judgement per task and annotator) are the last line of
defence: no judgement is ever lost or stored twice.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Sequence

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from core.db import lock_rows, retry_transient
from feedback import quality
from feedback.errors import (  # noqa: F401  (the sentences stay importable from here)
    ALREADY_JUDGED, IDEMPOTENCY_KEY_REUSED, LEASE_EXPIRED, NOT_LEASEHOLDER, AlreadyJudged, IdempotencyKeyReused,
    LeaseExpired, NotLeaseholder,
)
from feedback.models import Assignment, ComparisonTask, Judgement, Project
import feedback.services.queue_sql as queue_sql
from feedback.services.leases import renew_lease
from feedback.services.review import update_trust_from_gold

User = get_user_model()

RANKING_NOT_A_LIST = "Ranking must be a non-empty list of groups of labels, best first, e.g. [[\"a\"], [\"b\", \"c\"]]."
RANKING_BAD_GROUP = "Each ranking group must be a non-empty list of labels; got {group!r}."
RANKING_UNKNOWN_LABEL = "Unknown completion label {label!r}; this task shows {labels}."
RANKING_DUPLICATE_LABEL = "Label {label!r} appears more than once in the ranking."
RANKING_MISSING_LABEL = "Ranking must name every completion exactly once; missing: {labels}."
FLAG_UNKNOWN = "Unknown flag {flag!r}; allowed: {allowed}."
CONFIDENCE_RANGE = "Confidence must be an integer from 1 to 5."
COMMENT_TOO_LONG = "Comment is limited to {limit} characters."
NUL_NOT_ALLOWED = "Text must not contain NUL characters."

COMMENT_LIMIT = 5000
CANDIDATES_PER_PICK = 8


def release_expired_leases(*, project: Project, now: datetime | None = None, limit: int = 500) -> int:
    """Return tasks whose lease ran out to the pool. Uses the partial index on live leases only."""
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):  # inside next_task's transaction: no SAVEPOINT round trips
        rows = queue_sql.expired_leases(project_id=project.pk, now=now, limit=limit)
        if not rows:
            return 0
        Assignment.objects.filter(id__in=[assignment_id for assignment_id, _ in rows]).delete()
        for task_id, n in Counter(task_id for _, task_id in rows).items():
            ComparisonTask.objects.filter(pk=task_id).update(slots_taken=F("slots_taken") - n)
    return len(rows)


def cancel_tasks(*, task_ids) -> int:
    """Withdraw open tasks from the queue: they become cancelled, so next-task never serves them again, and their
    live leases end (a leaseholder's later submission is refused: they no longer hold a lease). Judgements already
    given, and complete tasks, are kept as they are. Returns how many tasks were cancelled. Call it inside the
    caller's transaction when it is part of a larger change."""
    with transaction.atomic():
        open_ids = list(lock_rows(ComparisonTask.objects.filter(
            pk__in=list(task_ids), status=ComparisonTask.Status.OPEN)).values_list("pk", flat=True))
        if not open_ids:
            return 0
        leases = Assignment.objects.filter(task_id__in=open_ids, state=Assignment.State.LEASED)
        freed = Counter(leases.values_list("task_id", flat=True))
        leases.delete()
        ComparisonTask.objects.filter(pk__in=open_ids).update(status=ComparisonTask.Status.CANCELLED)
        for task_id, n in freed.items():
            ComparisonTask.objects.filter(pk=task_id).update(slots_taken=F("slots_taken") - n)
    return len(open_ids)


@retry_transient
def next_task(*, project: Project, annotator, now: datetime | None = None) -> Assignment | None:
    """Lease the next task this annotator has not seen; the same one again if they already hold a lease.

    Picking walks the partial index of open tasks in (priority, id) order and claims a slot with a
    conditional UPDATE, so it never scans finished tasks and never over-assigns a task.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # One pick at a time per annotator (two tabs must not end up holding two leases). SQLite needs no row
        # lock: its IMMEDIATE transaction already holds the database's write lock.
        if connection.features.has_select_for_update:
            queue_sql.lock_annotator(annotator.pk)
        held = queue_sql.held_lease(annotator_id=annotator.pk, project_id=project.pk, now=now)
        if held is not None:
            return held
        release_expired_leases(project=project, now=now)

        if project.gold_rate > 0 and random.random() < project.gold_rate:
            gold = _lease_gold(project=project, annotator=annotator, now=now)
            if gold is not None:
                return gold
        # The candidate pick is hand-written SQL (queue_sql.first_candidate): compiling the ORM form of it cost
        # more CPU than the rest of a pick.
        skip_locked = connection.features.has_select_for_update_skip_locked
        for _ in range(CANDIDATES_PER_PICK):
            # PostgreSQL: take the first open task no other picker holds (one row, so nobody waits on rows we do
            # not need); when every candidate is held, wait for the first one rather than saying "nothing left"
            # because of a lock. SQLite: this transaction already holds the write lock.
            task = queue_sql.first_candidate(project_id=project.pk, annotator_id=annotator.pk,
                                             skip_locked=skip_locked, lock=skip_locked)
            if task is None and skip_locked:
                task = queue_sql.first_candidate(project_id=project.pk, annotator_id=annotator.pk,
                                                 skip_locked=False, lock=True)
            if task is None:
                return None
            texts = queue_sql.claim_slot(task.pk)
            if texts is not None:
                return _lease(task, annotator=annotator, project=project, now=now, texts=texts)
    return None


def _lease_gold(*, project: Project, annotator, now: datetime) -> Assignment | None:
    """Gold tasks are served to every annotator once, mixed in at the project's rate and indistinguishable
    from the others; they have no overlap limit."""
    gold = queue_sql.first_unseen_gold(project_id=project.pk, annotator_id=annotator.pk)
    if gold is None:
        return None
    ComparisonTask.objects.filter(pk=gold.pk).update(slots_taken=F("slots_taken") + 1)
    return _lease(gold, annotator=annotator, project=project, now=now)


def _lease(task: ComparisonTask, *, annotator, project: Project, now: datetime,
           texts: dict[int, str] | None = None) -> Assignment:
    """Lease a claimed task; `texts` are its completions' texts when the claim already read them."""
    if texts is None:
        texts = queue_sql.completion_texts(task.pk)
    label_order = list(texts)
    random.shuffle(label_order)  # a fresh anonymous order for every annotator
    assignment = queue_sql.insert_lease(task=task, annotator=annotator, project_id=project.pk, label_order=label_order,
                                        leased_at=now, leased_until=now + timedelta(seconds=project.lease_seconds))
    assignment.completion_texts = texts  # selectors.labelled_completions needs no second read
    return assignment


def ranking_to_completion_ids(ranking, label_map: dict[str, int]) -> list[list[int]]:
    """Translate a ranking in anonymous labels into completion ids, checking it names each exactly once."""
    if not isinstance(ranking, list) or not ranking:
        raise ValidationError({"ranking": RANKING_NOT_A_LIST})
    labels_shown = ", ".join(sorted(label_map))
    seen: set[str] = set()
    groups: list[list[int]] = []
    for group in ranking:
        if isinstance(group, str):
            group = [group]  # a flat ["a", "b"] is shorthand for [["a"], ["b"]]
        if not isinstance(group, list) or not group:
            raise ValidationError({"ranking": RANKING_BAD_GROUP.format(group=group)})
        ids = []
        for label in group:
            if not isinstance(label, str) or label.lower() not in label_map:
                raise ValidationError({"ranking": RANKING_UNKNOWN_LABEL.format(label=label, labels=labels_shown)})
            label = label.lower()
            if label in seen:
                raise ValidationError({"ranking": RANKING_DUPLICATE_LABEL.format(label=label)})
            seen.add(label)
            ids.append(label_map[label])
        groups.append(ids)
    missing = sorted(set(label_map) - seen)
    if missing:
        raise ValidationError({"ranking": RANKING_MISSING_LABEL.format(labels=", ".join(missing))})
    return groups


def _clean_flags(flags) -> list[str]:
    flags = list(flags or [])
    allowed = Judgement.Flag.values
    for flag in flags:
        if flag not in allowed:
            raise ValidationError({"flags": FLAG_UNKNOWN.format(flag=flag, allowed=", ".join(allowed))})
    return sorted(set(flags))


@retry_transient
def submit_judgement(
    *, task: ComparisonTask, annotator, ranking, flags: Sequence[str] = (), confidence: int | None = None,
    comment: str = "", idempotency_key: str = "", lease_token: str = "", now: datetime | None = None,
) -> tuple[Judgement, bool]:
    """Store the leaseholder's ranking once. Returns (judgement, created).

    A retry with the same Idempotency-Key returns the first judgement and stores nothing. A ranking that arrives
    after the lease ran out is not thrown away, whichever door it came through: the annotator takes the task
    again (`renew_lease`) when its place was never given away, or — with the signed `lease_token` next-task
    handed out — when the released task still has a free place; otherwise `LeaseTaken` / `NotLeaseholder`.
    """
    now = now or timezone.now()
    idempotency_key = (idempotency_key or "").strip()
    if confidence is not None and (isinstance(confidence, bool) or confidence not in range(1, 6)):
        raise ValidationError({"confidence": CONFIDENCE_RANGE})
    comment = comment or ""
    if len(comment) > COMMENT_LIMIT:
        raise ValidationError({"comment": COMMENT_TOO_LONG.format(limit=COMMENT_LIMIT)})
    if "\x00" in comment:
        raise ValidationError({"comment": NUL_NOT_ALLOWED})
    flags = _clean_flags(flags)
    fields = dict(task=task, annotator=annotator, ranking=ranking, flags=flags, confidence=confidence, comment=comment,
                  idempotency_key=idempotency_key, now=now)
    try:
        return _store_once(**fields)
    except LeaseExpired:
        pass  # its place in the task was never given away
    except NotLeaseholder:
        if not lease_token:
            raise
    renew_lease(task=task, annotator=annotator, token=lease_token, now=now)
    return _store_once(**fields)


def _store_once(*, task, annotator, idempotency_key, **fields) -> tuple[Judgement, bool]:
    try:
        return _store_judgement(task=task, annotator=annotator, idempotency_key=idempotency_key, **fields)
    except IntegrityError:
        # The key's unique constraint refused the insert: the key names a judgement of another task (the lease
        # path skips a lookup of its own; one stored judgement per task and annotator is guarded by the lock).
        if idempotency_key and Judgement.objects.filter(
                annotator=annotator, idempotency_key=idempotency_key).exclude(task=task).exists():
            raise IdempotencyKeyReused() from None
        raise


def _prior_judgement(*, task: ComparisonTask, annotator, idempotency_key: str) -> Judgement | None:
    """The judgement a retry with this key already stored (None without a key); Conflict if it judged another task."""
    if not idempotency_key:
        return None
    prior = Judgement.objects.filter(annotator=annotator, idempotency_key=idempotency_key).first()
    if prior is not None and prior.task_id != task.pk:
        raise IdempotencyKeyReused()
    return prior


def _store_judgement(*, task, annotator, ranking, flags, confidence, comment, idempotency_key,
                     now) -> tuple[Judgement, bool]:
    with transaction.atomic():
        assignment = queue_sql.lease_of(task_id=task.pk, annotator_id=annotator.pk)
        if assignment is None or assignment.state != Assignment.State.LEASED or assignment.leased_until <= now:
            # Not a live lease: maybe a retry of a stored judgement. Looked up after taking the lock, so a
            # concurrent retry waits for the first and then sees it.
            prior = _prior_judgement(task=task, annotator=annotator, idempotency_key=idempotency_key)
            if prior is not None:
                return prior, False
            if assignment is None or assignment.state == Assignment.State.SKIPPED:
                raise NotLeaseholder()
            if assignment.state == Assignment.State.SUBMITTED:
                raise AlreadyJudged()
            raise LeaseExpired()

        ranking_ids = ranking_to_completion_ids(ranking, assignment.label_map())
        # Without adaptive overlap the task's count is one UPDATE written with the judgement (queue_sql); gold tasks
        # stay open for every annotator and never complete.
        counted_with_insert = not task.is_gold and not _adaptive_overlap(task.project)
        judgement = queue_sql.record_judgement(values=dict(
            task_id=task.pk, annotator_id=annotator.pk, assignment_id=assignment.pk, ranking=ranking_ids,
            ranking_labels=[[label.lower() for label in ([g] if isinstance(g, str) else g)] for g in ranking],
            flags=flags, confidence=confidence, comment=comment, idempotency_key=idempotency_key,
            seconds_spent=max(0.0, (now - assignment.leased_at).total_seconds()),
        ), assignment_id=assignment.pk, now=now, count_task_id=task.pk if counted_with_insert else None)
        judgement.task, judgement.annotator, judgement.assignment = task, annotator, assignment  # as create() had them
        assignment.state = Assignment.State.SUBMITTED
        assignment.finished_at = now
        if task.is_gold:
            update_trust_from_gold(project=task.project, annotator=annotator)
        elif not counted_with_insert:
            _count_adaptively(task)
    return judgement, True


def _adaptive_overlap(project: Project) -> bool:
    return bool(project.max_overlap) and project.max_overlap > project.overlap


def _count_adaptively(task: ComparisonTask) -> None:
    """One more judgement for a task of a project with adaptive overlap: when it reaches its need with
    disagreeing judges it wants one more (up to max_overlap) before it completes."""
    ComparisonTask.objects.filter(pk=task.pk).update(judgements_done=F("judgements_done") + 1)
    _ask_again_if_judges_disagree(task)
    ComparisonTask.objects.filter(
        pk=task.pk, status=ComparisonTask.Status.OPEN, judgements_done__gte=F("judgements_needed")
    ).update(status=ComparisonTask.Status.COMPLETE)


def _ask_again_if_judges_disagree(task: ComparisonTask) -> None:
    """Adaptive overlap: a task that reached its need with disagreeing judges wants one more, up to max_overlap."""
    project = task.project
    if not project.max_overlap or project.max_overlap <= project.overlap:
        return
    task.refresh_from_db(fields=["judgements_done", "judgements_needed"])
    if task.judgements_done < task.judgements_needed or task.judgements_needed >= project.max_overlap:
        return
    rankings = list(Judgement.objects.filter(task=task).values_list("ranking", flat=True))
    if quality.needs_more_judgements(rankings, min_judgements=project.overlap, max_judgements=project.max_overlap,
                                     agreement_threshold=project.agreement_threshold):
        ComparisonTask.objects.filter(pk=task.pk).update(judgements_needed=F("judgements_needed") + 1)


@retry_transient
def skip_task(*, task: ComparisonTask, annotator, now: datetime | None = None) -> Assignment:
    """Give a leased task back: it returns to the pool for others and is never served to this annotator again."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = lock_rows(Assignment.objects.filter(task=task, annotator=annotator)).first()
        if assignment is None or assignment.state != Assignment.State.LEASED or assignment.leased_until <= now:
            raise NotLeaseholder()
        assignment.state = Assignment.State.SKIPPED
        assignment.finished_at = now
        assignment.save(update_fields=["state", "finished_at"])
        ComparisonTask.objects.filter(pk=task.pk).update(slots_taken=F("slots_taken") - 1)
    return assignment
