"""Every read of the annotation platform that is more than a one-liner. Pages, the API, admin, commands and the
training app call these; nothing here writes (a cache entry aside).

One module per concern; the names below are importable from here (`from feedback import selectors;
selectors.get_project_for_user(...)`), a module's own constants from the module:

- `projects`: the permission-aware lookups every door shares (projects_for_user, get_project_for_user,
  task_for_annotator, may_create_projects)
- `sql`: the hand-written SQL of those lookups on the annotate path (member_project, member_task)
- `annotate`: the annotate page's reads (labelled_completions, annotator_progress, why_nothing_waiting)
- `evidence`: the project's judgements as plain data for `feedback.quality` (judgement_evidence, trust_evidence,
  recent_agreement)
- `dashboard`: the dashboard's figures (dashboard_figures, project_stats)
- `review`: the reviewers' queue of disputed tasks and one task's evidence (review_queue, next_in_queue, task_evidence)
- `tasks`: the data browser (task_page with its filters and keyset pages, one task per role, judgement_history)
- `exports`: what an export reads (judgements_in_scope, export_batch)
"""

from feedback.selectors.annotate import (
    annotator_progress, assignment_of, forget_judgements_left, judgements_left, labelled_completions,
    why_nothing_waiting,
)
from feedback.selectors.dashboard import (
    annotator_throughput, dashboard_figures, judgements_per_hour, project_stats,
)
from feedback.selectors.evidence import (
    MAX_JUDGEMENTS_ANALYSED, JudgementEvidence, gold_judgements_of, judgement_evidence, recent_agreement,
    trust_evidence,
)
from feedback.selectors.exports import (
    SINCE_SNAPSHOT_UNKNOWN, CompletionInfo, ExportBatch, PromptInfo, complete_snapshot, export_batch,
    has_chat_prompts, judgements_in_scope,
)
from feedback.selectors.projects import (
    get_project_for_user, may_create_projects, project_by_slug, projects_for_user, role_in_project,
    task_for_annotator,
)
from feedback.selectors.review import (
    QueueEntry, QueueFilters, TaskEvidence, adjudicated_ids, next_in_queue, review_queue, scored_tasks,
    task_evidence,
)
from feedback.selectors.tasks import (
    TaskFilters, TaskPage, agreement_of, filtered_tasks, is_revisable, judgement_history, own_view, parse_cursor,
    parse_task_filters, task_for_viewer, task_in_project, task_page, task_review_detail, task_rows,
)

__all__ = [
    "MAX_JUDGEMENTS_ANALYSED", "SINCE_SNAPSHOT_UNKNOWN",
    "CompletionInfo", "ExportBatch", "JudgementEvidence", "PromptInfo", "QueueEntry", "QueueFilters", "TaskEvidence",
    "TaskFilters", "TaskPage",
    "adjudicated_ids", "agreement_of", "annotator_progress", "annotator_throughput", "assignment_of",
    "complete_snapshot", "dashboard_figures", "export_batch", "filtered_tasks", "forget_judgements_left",
    "get_project_for_user", "gold_judgements_of", "has_chat_prompts", "is_revisable", "judgement_evidence",
    "judgement_history", "judgements_in_scope", "judgements_left", "judgements_per_hour", "labelled_completions",
    "may_create_projects", "next_in_queue", "own_view", "parse_cursor", "parse_task_filters", "project_by_slug",
    "project_stats", "projects_for_user", "recent_agreement", "review_queue", "role_in_project", "scored_tasks",
    "task_evidence", "task_for_annotator", "task_for_viewer", "task_in_project", "task_page", "task_review_detail",
    "task_rows", "trust_evidence", "why_nothing_waiting",
]
