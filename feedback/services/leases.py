"""Keeping a lease alive, and taking a task back after the lease ran out.

The annotate page renews the lease while the annotator is active (`renew_lease`, called by a small POST
endpoint). A ranking that arrives after the lease expired is not thrown away: when the task still wants
judgements the annotator takes it again (`renew_lease` again) and the ranking is stored as usual. The page
carries a signed lease token (`lease_token`: task, annotator, their anonymous label order, lease start), so a
task can be taken back even after `release_expired_leases` deleted the expired assignment, with the same
labels the annotator saw — never with a fresh shuffle that would mislabel their ranking.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core import signing
from django.utils.crypto import salted_hmac
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.db import lock_rows, retry_transient
from feedback.errors import LEASE_TAKEN, AlreadyJudged, LeaseTaken, NotLeaseholder  # noqa: F401
from feedback.models import Assignment, ComparisonTask

User = get_user_model()

TOKEN_SALT = "feedback.lease"
TOKEN_MAX_AGE_SECONDS = 7 * 24 * 3600


def _keyed_order(task_id: int, completion_ids) -> list[int]:
    """The task's completions in an order only the server can compute (keyed by SECRET_KEY): the token names
    the labels' completions by position in this order, so it tells a reader nothing about which answer is whose
    (raw ids would: a candidate's completions are the newest rows of a head-to-head task)."""
    return sorted(completion_ids, key=lambda cid: salted_hmac(TOKEN_SALT, f"{task_id}:{cid}").digest())


def lease_token(assignment: Assignment) -> str:
    """A signed note of this lease (task, annotator, label order, start) that the annotate form and next-task carry."""
    keyed = _keyed_order(assignment.task_id, assignment.label_order)
    return signing.dumps({"t": assignment.task_id, "u": assignment.annotator_id,
                          "p": [keyed.index(cid) for cid in assignment.label_order],
                          "at": assignment.leased_at.isoformat()}, salt=TOKEN_SALT, compress=True)


def read_lease_token(token: str, *, task: ComparisonTask, annotator) -> tuple[list[int], datetime] | None:
    """(label order, lease start) from a token issued for this task and annotator; None for anything else."""
    try:
        data = signing.loads(token or "", salt=TOKEN_SALT, max_age=TOKEN_MAX_AGE_SECONDS)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("t") != task.pk or data.get("u") != annotator.pk:
        return None
    leased_at = parse_datetime(str(data.get("at", "")))
    positions = data.get("p")
    keyed = _keyed_order(task.pk, task.completions.values_list("pk", flat=True))
    if leased_at is None or not isinstance(positions, list) or sorted(positions) != list(range(len(keyed))):
        return None
    return [keyed[position] for position in positions], leased_at


@retry_transient
def renew_lease(*, task: ComparisonTask, annotator, token: str = "", now: datetime | None = None) -> Assignment:
    """Extend the annotator's lease on `task` to a full `lease_seconds` from now.

    A live or expired-but-unreleased lease is simply extended (its place in the task was never given away).
    A lease already released is taken again from the signed `token` when the task still has a free place;
    otherwise `LeaseTaken`. No lease and no valid token: `NotLeaseholder` (403) (another annotator's
    lease is never touched: assignments are per annotator).
    """
    now = now or timezone.now()
    until = now + timedelta(seconds=task.project.lease_seconds)
    with transaction.atomic():
        # One renewal at a time per annotator (as in next_task): two late submits from a double click must not
        # both take a place for the same task.
        list(lock_rows(User.objects.filter(pk=annotator.pk)).values_list("pk", flat=True))
        assignment = lock_rows(Assignment.objects.filter(task=task, annotator=annotator)).first()
        if assignment is not None:
            if assignment.state == Assignment.State.SUBMITTED:
                raise AlreadyJudged()
            if assignment.state != Assignment.State.LEASED:
                raise NotLeaseholder()
            assignment.leased_until = until
            assignment.save(update_fields=["leased_until"])
            return assignment
        note = read_lease_token(token, task=task, annotator=annotator)
        if note is None:
            raise NotLeaseholder()
        order, leased_at = note
        places = ComparisonTask.objects.filter(pk=task.pk, status=ComparisonTask.Status.OPEN)
        if not task.is_gold:  # gold tasks are served to everyone: no overlap limit
            places = places.filter(slots_taken__lt=F("judgements_needed"))
        if not places.update(slots_taken=F("slots_taken") + 1):
            raise LeaseTaken()
        return Assignment.objects.create(task=task, annotator=annotator, project=task.project, label_order=order,
                                         leased_at=min(leased_at, now), leased_until=until)
