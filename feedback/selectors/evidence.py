"""The project's judgements as evidence: plain data for `feedback.quality`, which the dashboard, trust and the
review queue read alike, so they share one notion of consensus."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from feedback import quality
from feedback.models import ComparisonTask, Judgement, Membership, Project

MAX_JUDGEMENTS_ANALYSED = 200_000


@dataclass
class JudgementEvidence:
    """The project's recent judgements as plain data for `feedback.quality`."""

    rows: list  # (judgement id, task id, annotator username, ranking, created_at), newest first
    gold: dict  # gold task id -> known ranking
    trust: dict  # username -> trust
    by_task: dict = field(default_factory=dict)  # non-gold task id -> [(username, ranking, created_at), …]

    def votes_by_task(self) -> dict:
        """{task: [(annotator, ranking), …]} for the quality functions."""
        return {task: [(a, r) for a, r, _ in votes] for task, votes in self.by_task.items()}

    def gold_judgements(self) -> list:
        return [(annotator, task, ranking) for _, task, annotator, ranking, _ in self.rows]


def judgement_evidence(*, project: Project) -> JudgementEvidence:
    rows = list(
        Judgement.objects.filter(task__project=project).order_by("-id")
        .values_list("id", "task_id", "annotator__username", "ranking", "created_at")[:MAX_JUDGEMENTS_ANALYSED]
    )
    gold = dict(ComparisonTask.objects.filter(project=project, is_gold=True).values_list("id", "gold_ranking"))
    trust = dict(Membership.objects.filter(project=project).values_list("user__username", "trust"))
    by_task: dict[int, list] = defaultdict(list)
    for _, task_id, annotator, ranking, created_at in rows:
        if task_id not in gold:
            by_task[task_id].append((annotator, ranking, created_at))
    return JudgementEvidence(rows=rows, gold=gold, trust=trust, by_task=dict(by_task))


def trust_evidence(*, project: Project) -> dict[str, dict[str, int]]:
    """Per annotator: gold pairs right/total and pairs agreeing with the others' consensus/total."""
    data = judgement_evidence(project=project)
    evidence: dict[str, dict[str, int]] = defaultdict(dict)
    for annotator, (hits, n) in quality.agreement_counts(data.votes_by_task(), data.trust).items():
        evidence[annotator].update(agree=hits, agree_total=n)
    for annotator, (hits, n) in quality.gold_counts(data.gold_judgements(), data.gold).items():
        evidence[annotator].update(gold_correct=hits, gold_total=n)
    return dict(evidence)


def gold_judgements_of(*, project: Project, annotator) -> list[tuple]:
    """[(ranking, known ranking)] of the annotator's judgements of gold tasks."""
    return list(Judgement.objects.filter(task__project=project, task__is_gold=True, annotator=annotator)
                .values_list("ranking", "task__gold_ranking"))


def recent_agreement(*, project: Project, last_n: int = 2000) -> float | None:
    """Mean judge agreement over the consensus pairs of the last `last_n` judgements (None: no pair judged twice)."""
    recent = list(
        Judgement.objects.filter(task__project=project, task__is_gold=False).order_by("-id")
        .values_list("task_id", "annotator_id", "ranking")[:last_n]
    )
    trust = dict(Membership.objects.filter(project=project).values_list("user_id", "trust"))
    by_task: dict[int, list] = {}
    for task_id, annotator, ranking in recent:
        by_task.setdefault(task_id, []).append((ranking, trust.get(annotator, 1.0)))
    agreements = [
        pair.agreement for votes in by_task.values() if len(votes) > 1 for pair in quality.consensus_pairs(votes)
    ]
    return sum(agreements) / len(agreements) if agreements else None
