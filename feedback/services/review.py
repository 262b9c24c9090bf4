"""Quality writes: gold answers, reviewers' adjudications, annotators' trust."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from core.audit import record_audit
from core.models import AuditEvent
from core.permissions import REVIEWER, require_project_role
from feedback import quality, selectors
from feedback.models import Adjudication, ComparisonTask, Membership, Project

ADJUDICATION_RANKING_INVALID = "The adjudicated ranking must name each completion of the task exactly once: {ids}."
GOLD_RANKING_INVALID = "A gold ranking must name each completion of the task exactly once."
NOTE_LIMIT = 2000


@transaction.atomic
def mark_gold(*, task: ComparisonTask, ranking: list[list[int]], actor=None) -> ComparisonTask:
    """Give a task a known answer (completion ids, best first, ties as inner lists).

    It leaves the normal queue and is mixed into every annotator's stream at the project's gold rate.
    """
    completion_ids = sorted(task.completions.values_list("id", flat=True))
    flat = [cid for group in ranking for cid in group] if isinstance(ranking, list) else []
    if not ranking or any(not isinstance(g, list) or not g for g in ranking) or sorted(flat) != completion_ids:
        raise ValidationError({"gold_ranking": GOLD_RANKING_INVALID})
    task.is_gold = True
    task.gold_ranking = ranking
    task.status = ComparisonTask.Status.OPEN
    task.save(update_fields=["is_gold", "gold_ranking", "status"])
    record_audit(actor=actor, event_type=AuditEvent.Type.GOLD_MARKED, project=task.project, target=f"task:{task.pk}")
    return task


def mark_gold_from_consensus(*, task: ComparisonTask, actor=None) -> ComparisonTask | None:
    """The adjudication, else the judges' consensus ranking, becomes the task's known answer (None: no judgements)."""
    adjudication = Adjudication.objects.filter(task=task).first()
    if adjudication is not None:
        ranking = adjudication.ranking
    else:
        rankings = list(task.judgements.values_list("ranking", flat=True))
        if not rankings:
            return None
        ranking = quality.consensus_ranking(rankings)
    return mark_gold(task=task, ranking=ranking, actor=actor)


def _is_grouped_ids(ranking) -> bool:
    """Groups best first, each a non-empty list of completion ids (ints); a group of several ids is a tie."""
    return isinstance(ranking, list) and bool(ranking) and all(
        isinstance(group, list) and group and all(isinstance(cid, int) and not isinstance(cid, bool) for cid in group)
        for group in ranking
    )


@transaction.atomic
def adjudicate(*, task: ComparisonTask, reviewer, ranking: list[list[int]], note: str = "") -> Adjudication:
    """Record a reviewer's decision beside the judgements (never over them); it decides the task's pairs in exports.

    `ranking` holds completion ids best first; an inner list of several ids is a tie (`[[101, 102], [103]]`).
    Adjudicating again replaces the decision; the audit row keeps the previous ranking.
    """
    require_project_role(user=reviewer, project=task.project, role=REVIEWER)
    completion_ids = sorted(task.completions.values_list("id", flat=True))
    if not _is_grouped_ids(ranking) or sorted(cid for group in ranking for cid in group) != completion_ids:
        raise ValidationError({"ranking": ADJUDICATION_RANKING_INVALID.format(ids=", ".join(map(str, completion_ids)))})
    previous = Adjudication.objects.filter(task=task).values_list("ranking", flat=True).first()
    adjudication, _ = Adjudication.objects.update_or_create(
        task=task, defaults={"reviewer": reviewer, "ranking": ranking, "note": note[:NOTE_LIMIT]}
    )
    record_audit(actor=reviewer, event_type=AuditEvent.Type.TASK_ADJUDICATED, project=task.project,
                 target=f"task:{task.pk}",
                 extra={"ranking": ranking, "ties": any(len(group) > 1 for group in ranking), "previous": previous})
    return adjudication


def update_trust_from_gold(*, project: Project, annotator) -> None:
    """Refresh the annotator's trust from their gold answers (agreement joins in `recompute_trust`).
    Called inside the judgement's transaction."""
    correct = total = 0
    for ranking, gold in selectors.gold_judgements_of(project=project, annotator=annotator):
        hits, n = quality.gold_pair_counts(ranking, gold)
        correct, total = correct + hits, total + n
    Membership.objects.filter(project=project, user=annotator).update(
        trust=quality.trust_score(gold_correct=correct, gold_total=total, agree=0, agree_total=0)
    )


def recompute_trust(*, project: Project) -> dict[str, float]:
    """Trust of every member from gold accuracy and leave-one-out agreement with the consensus."""
    evidence = selectors.trust_evidence(project=project)
    scores = {}
    with transaction.atomic():
        for membership in Membership.objects.filter(project=project).select_related("user"):
            mine = evidence.get(membership.user.username, {})
            scores[membership.user.username] = quality.trust_score(
                gold_correct=mine.get("gold_correct", 0), gold_total=mine.get("gold_total", 0),
                agree=mine.get("agree", 0), agree_total=mine.get("agree_total", 0),
            )
            Membership.objects.filter(pk=membership.pk).update(trust=scores[membership.user.username])
    return scores
