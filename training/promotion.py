"""Humans decide promotion: a candidate policy becomes active only when annotators prefer it to the active one.

A policy that passes its automatic gate (PPO's bootstrap test, DPO's held-out accuracy) is registered as a
CANDIDATE unless its project has `auto_promote`. Publishing then pits the candidate against the project's
active policy in ordinary, blind comparison tasks (`training.runners.publish`). `decide_promotions` reads
the judgements of those head-to-head tasks:

- a judgement scores the candidate 1 when annotators ranked its completion above the active policy's, 0
  below, 0.5 on a tie (with several completions of each version in one task: the mean over the pairs);
- the win rate's 95% Wilson interval (`feedback.quality.wilson_interval`) decides, once at least
  `min_judgements` (setting `PROMOTION_MIN_JUDGEMENTS`, default 30) are in:
  promote when the lower end is above 0.5; reject when the upper end is at or below 0.5 (the interval
  lies at or below a coin flip); otherwise wait for more judgements;
- `human/win_rate`, `human/win_low`, `human/win_high`, `human/judgements` (and `human/verdict`) are stored
  in the candidate's metrics every time, so the registry shows how the vote stands.

Idempotent like `retrain_if_due`: only CANDIDATE rows are decided, each under a row lock, so two ticks (the
end of a publish run, `manage.py decide_promotions`, the worker's maintenance) decide a candidate once.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError

from training import selectors
from training.models import ModelVersion

DEFAULT_MIN_JUDGEMENTS = 30
PROMOTE, REJECT, WAIT = "promote", "reject", "wait"


def min_judgements_default() -> int:
    return int(getattr(settings, "PROMOTION_MIN_JUDGEMENTS", DEFAULT_MIN_JUDGEMENTS))


def _positions(ranking: list) -> dict[int, int]:
    """Completion id → rank group (0 best); a plain id stands for a group of one."""
    return {cid: rank for rank, group in enumerate(ranking) for cid in ([group] if isinstance(group, int) else group)}


def judgement_score(ranking: list, candidate_ids: set[int], rival_ids: set[int]) -> float | None:
    """The candidate's score in one judgement: the mean over (candidate, rival) completion pairs of 1 for a win,
    0.5 for a tie and 0 for a loss; None when the ranking does not hold both versions."""
    position = _positions(ranking)
    pairs = [(position[c], position[r]) for c in candidate_ids if c in position for r in rival_ids if r in position]
    if not pairs:
        return None
    return sum(1.0 if c < r else 0.5 if c == r else 0.0 for c, r in pairs) / len(pairs)


def head_to_head(*, project, candidate: ModelVersion, rival: ModelVersion) -> tuple[float, int]:
    """(the candidate's summed score, the number of judgements) over the project's non-gold tasks that hold
    completions of both versions."""
    from feedback.models import ComparisonTask, Judgement

    tasks = (ComparisonTask.objects.filter(project=project, is_gold=False, completions__model_version=candidate)
             .filter(completions__model_version=rival))  # two joins: tasks holding both versions
    task_ids = set(tasks.values_list("pk", flat=True))
    owner: dict[int, dict[int, int]] = {}
    links = ComparisonTask.completions.through.objects.filter(
        comparisontask_id__in=task_ids, completion__model_version__in=(candidate.pk, rival.pk))
    for task_id, cid, version_id in links.values_list("comparisontask_id", "completion_id", "completion__model_version"):
        owner.setdefault(task_id, {})[cid] = version_id
    wins, n = 0.0, 0
    for task_id, ranking in Judgement.objects.filter(task__in=task_ids).values_list("task", "ranking").iterator():
        completions = owner.get(task_id, {})
        score = judgement_score(ranking, {c for c, v in completions.items() if v == candidate.pk},
                                {c for c, v in completions.items() if v == rival.pk})
        if score is not None:
            wins, n = wins + score, n + 1
    return wins, n


def verdict_of(wins: float, n: int, min_judgements: int) -> tuple[str, dict]:
    """The decision and the metrics to store: promote when the Wilson interval's lower end is above 0.5, reject
    when its upper end is at or below 0.5, wait before `min_judgements` or while the interval holds 0.5."""
    from feedback.quality import wilson_interval

    low, high = wilson_interval(wins, n)
    verdict = WAIT
    if n >= min_judgements and low > 0.5:
        verdict = PROMOTE
    elif n >= min_judgements and high <= 0.5:
        verdict = REJECT
    metrics = {"human/win_rate": (wins / n) if n else None, "human/win_low": low, "human/win_high": high,
               "human/judgements": n, "human/min_judgements": min_judgements, "human/verdict": verdict}
    return verdict, metrics


def decide_promotions(*, project, min_judgements: int | None = None, actor=None) -> list[tuple[ModelVersion, str]]:
    """Decide every candidate policy of `project` against its active policy, oldest candidate first (after a
    promotion the next one is measured against the new active policy). Returns [(version, verdict), …]."""
    from training.services.registry import decide_candidate

    needed = min_judgements if min_judgements is not None else min_judgements_default()
    decided = []
    for candidate in selectors.promotion_candidates(project=project):
        rival = selectors.active_policy(project=project)
        if rival is None or rival.pk == candidate.pk:
            continue
        wins, n = head_to_head(project=project, candidate=candidate, rival=rival)
        verdict, metrics = verdict_of(wins, n, needed)
        metrics["human/rival"] = rival.name
        try:
            decided.append((decide_candidate(version=candidate, verdict=verdict, metrics=metrics, actor=actor), verdict))
        except ValidationError:  # decided meanwhile by another tick, or activated by hand
            continue
    return decided


def decide_all_promotions(*, min_judgements: int | None = None) -> list[tuple[ModelVersion, str]]:
    """`decide_promotions` for every project with a candidate policy (the maintenance tick's entry point)."""
    from feedback.models import Project

    projects = Project.objects.filter(model_versions__kind=ModelVersion.Kind.POLICY,
                                      model_versions__status=ModelVersion.Status.CANDIDATE).distinct()
    return [item for project in projects for item in decide_promotions(project=project, min_judgements=min_judgements)]
