"""The queue's refusals as classes with codes (Zulip's `JsonableError` style).

Callers tell refusals apart by class (`except LeaseExpired`), never by message text; the API answers with the
class's `code` beside the `detail` sentence, so scripts can branch on it too.
"""

from __future__ import annotations

from rest_framework import status

from core.exceptions import ApplicationError, Conflict

NOT_LEASEHOLDER = "You do not hold a lease on this task. Ask for the next task first."
LEASE_EXPIRED = "Your lease on this task expired and it went back to the pool. Ask for the next task."
ALREADY_JUDGED = "You have already judged this task."
IDEMPOTENCY_KEY_REUSED = "This Idempotency-Key was already used for another task."
LEASE_TAKEN = ("Your lease on this task ran out and other annotators have taken all of its places, so your ranking "
               "could not be saved. It is still shown below; take the next task when you are ready.")


class NotLeaseholder(ApplicationError):
    """No lease on the task (never had one, skipped it, or it was released) and no valid lease token."""

    status_code = status.HTTP_403_FORBIDDEN
    code = "not_leaseholder"
    default_message = NOT_LEASEHOLDER


class LeaseExpired(Conflict):
    code = "lease_expired"
    default_message = LEASE_EXPIRED


class AlreadyJudged(Conflict):
    code = "already_judged"
    default_message = ALREADY_JUDGED


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    default_message = IDEMPOTENCY_KEY_REUSED


class LeaseTaken(Conflict):
    """The lease ran out and others took every place of the task before the late ranking arrived."""

    code = "lease_taken"
    default_message = LEASE_TAKEN
