"""Every write of the annotation platform. Views, admin, commands and jobs call these; nothing else writes.

One module per concern; everything is importable from here (`from feedback import services;
services.next_task(...)`):

- `projects`: create_project, update_project, add_member, change_role, remove_member (the member rules), ensure_role_groups, make_superuser
- `prompts`: import_prompts (rows parsed and validated by `feedback.importing`), create_task
- `queue`: next_task, submit_judgement, skip_task, release_expired_leases, cancel_tasks
- `review`: mark_gold, mark_gold_from_consensus, adjudicate, recompute_trust
- `revisions`: revise_judgement (an annotator changes their own judgement while the task is open)
- `snapshots`: create_snapshot (rows stored when it is made, never recomputed), export_preferences (files)
- `tokens`: API tokens of members: create_token, revoke_token, ensure_token, issue_operator_token, own_token, and
  who may manage whose (managed_users, token_facts, was_revoked)
"""

from feedback.services.projects import (
    ROLE_GROUPS, ROLE_UNKNOWN, LastAdmin, MemberGone, add_member, change_role, create_project, ensure_role_groups,
    make_superuser, remove_member, update_project,
)
from feedback.services.prompts import TASK_COMPLETIONS_RANGE, ImportResult, create_task, import_prompts
from feedback.services.queue import (
    ALREADY_JUDGED, COMMENT_LIMIT, COMMENT_TOO_LONG, CONFIDENCE_RANGE, FLAG_UNKNOWN, IDEMPOTENCY_KEY_REUSED,
    LEASE_EXPIRED, NOT_LEASEHOLDER, NUL_NOT_ALLOWED, RANKING_BAD_GROUP, RANKING_DUPLICATE_LABEL, RANKING_MISSING_LABEL,
    RANKING_NOT_A_LIST, RANKING_UNKNOWN_LABEL, cancel_tasks, next_task, ranking_to_completion_ids, release_expired_leases, skip_task,
    submit_judgement,
)
from feedback.services.review import (
    ADJUDICATION_RANKING_INVALID, GOLD_RANKING_INVALID, adjudicate, mark_gold, mark_gold_from_consensus,
    recompute_trust,
)
from feedback.services.revisions import (
    JUDGEMENT_PINNED, NOT_JUDGED, TASK_ADJUDICATED, TASK_CLOSED, revise_judgement,
)
from feedback.services.snapshots import create_snapshot, export_preferences, record_split_counts
from feedback.services.tokens import (
    TOKEN_NOT_YOURS, create_token, ensure_token, issue_operator_token, managed_users, may_manage_token, own_token,
    revoke_token, scope_for, token_facts, was_revoked,
)

__all__ = [
    "ADJUDICATION_RANKING_INVALID", "ALREADY_JUDGED", "COMMENT_LIMIT", "COMMENT_TOO_LONG", "CONFIDENCE_RANGE",
    "FLAG_UNKNOWN", "GOLD_RANKING_INVALID", "IDEMPOTENCY_KEY_REUSED", "LEASE_EXPIRED", "NOT_LEASEHOLDER",
    "NUL_NOT_ALLOWED", "RANKING_BAD_GROUP", "RANKING_DUPLICATE_LABEL", "RANKING_MISSING_LABEL", "RANKING_NOT_A_LIST",
    "RANKING_UNKNOWN_LABEL", "ROLE_GROUPS", "ROLE_UNKNOWN", "TASK_COMPLETIONS_RANGE", "ImportResult",
    "LastAdmin", "MemberGone", "change_role",
    "add_member", "adjudicate", "cancel_tasks", "create_project", "create_snapshot", "record_split_counts", "create_task", "ensure_role_groups",
    "export_preferences", "import_prompts", "make_superuser", "mark_gold", "mark_gold_from_consensus", "next_task",
    "ranking_to_completion_ids", "recompute_trust", "release_expired_leases", "remove_member", "skip_task",
    "submit_judgement", "update_project",
    "JUDGEMENT_PINNED", "NOT_JUDGED", "TASK_ADJUDICATED", "TASK_CLOSED", "revise_judgement",
    "TOKEN_NOT_YOURS", "create_token", "ensure_token", "issue_operator_token", "managed_users", "may_manage_token",
    "own_token", "revoke_token", "scope_for", "token_facts", "was_revoked",
]
