"""Humans decide promotion: a candidate policy becomes active only when annotators prefer it to the active one.

A policy that passes its automatic gate (PPO's one-sided t bound, DPO's clustered accuracy on people's pairs) is registered as a
CANDIDATE unless its project has `auto_promote`. Publishing then pits every candidate against the project's
active policy in ordinary, blind comparison tasks on held-out prompts drawn at random (`training.runners.publish`).
`decide_promotions` reads those head-to-head tasks:

- a judgement scores the candidate 1 when annotators ranked its completion above the active policy's, 0 below,
  0.5 on a tie (with several completions of each version in one task: the mean over the pairs);
- a task's score is the mean over its judgements: the judges of one task saw the same answers, so the task is the
  independent unit and the test counts tasks, not judgements; only closed (complete) tasks count, in the order
  they closed (their last judgement);
- `training.pipeline.promotion_test` decides, an always-valid sequential test (a betting e-process): promote when
  the evidence that the candidate is better reaches 1/alpha (alpha 0.025), reject when a gain of `min_gain`
  (0.075) is ruled out or after `max_tasks` (1000) tasks without a verdict; wait otherwise. It is valid when looked
  at after every task, so the ticks (each publish run, `manage.py decide_promotions`, the worker's maintenance)
  never inflate the false-promotion rate (2.5%; docs/statistics/promotion.md has the simulation);
- the evidence is stored in the candidate's metrics every time (`human/verdict`, `human/verdict_words`,
  `human/tasks`, `human/judgements`, `human/win_rate`, `human/win_low`/`human/win_high` (the confidence sequence),
  `human/e_value`, `human/by_annotator`, …), so the registry shows how the vote stands.

Idempotent like `retrain_if_due`: only CANDIDATE rows are decided, each under a row lock, so two ticks decide a
candidate once.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError

from training import selectors
from training.models import ModelVersion
from training.pipeline.promotion_test import PromotionRule, promotion_evidence

PROMOTE, REJECT, WAIT = "promote", "reject", "wait"
BY_ANNOTATOR_LIMIT = 50  # annotators listed in the stored head-to-head (most judgements first)


def promotion_rule(*, max_tasks: int | None = None) -> PromotionRule:
    """The rule with the deployment's settings: PROMOTION_MAX_TASKS (horizon, default 1000) and PROMOTION_MIN_GAIN
    (futility, default 0.075); alpha is the contract's 0.025."""
    defaults = PromotionRule()
    horizon = max_tasks if max_tasks is not None else getattr(settings, "PROMOTION_MAX_TASKS", defaults.max_tasks)
    return PromotionRule(max_tasks=horizon, min_gain=getattr(settings, "PROMOTION_MIN_GAIN", defaults.min_gain))


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


@dataclass(frozen=True)
class HeadToHead:
    """The candidate's task scores in the order the tasks closed, and how each annotator voted."""

    scores: list[float]
    judgements: int
    by_annotator: list[dict]  # [{"annotator", "judgements", "win_rate"}], most judgements first


def head_to_head(*, project, candidate: ModelVersion, rival: ModelVersion) -> HeadToHead:
    """The candidate's score on every closed, non-gold task holding completions of both versions."""
    scores, judgements, votes = [], 0, {}
    for task in selectors.head_to_head_tasks(project=project, candidate=candidate, rival=rival):
        task_votes = [(who, judgement_score(ranking, task.candidate_ids, task.rival_ids))
                      for who, ranking in task.judgements]
        task_votes = [(who, score) for who, score in task_votes if score is not None]
        if not task_votes:
            continue
        scores.append(sum(score for _, score in task_votes) / len(task_votes))
        judgements += len(task_votes)
        for who, score in task_votes:
            total, n = votes.get(who, (0.0, 0))
            votes[who] = (total + score, n + 1)
    by_annotator = [{"annotator": who, "judgements": n, "win_rate": total / n}
                    for who, (total, n) in sorted(votes.items(), key=lambda item: (-item[1][1], item[0]))]
    return HeadToHead(scores=scores, judgements=judgements, by_annotator=by_annotator[:BY_ANNOTATOR_LIMIT])


def verdict_of(duel: HeadToHead, rule: PromotionRule | None = None) -> tuple[str, dict]:
    """The sequential test's decision on the task scores, and the metrics to store (the evidence in numbers and
    in words)."""
    rule = rule or promotion_rule()
    evidence = promotion_evidence(duel.scores, alpha=rule.alpha, design_gain=rule.design_gain,
                                  min_gain=rule.min_gain, futility_alpha=rule.futility_alpha, max_tasks=rule.max_tasks)
    metrics = {"human/verdict": evidence.verdict, "human/verdict_words": evidence.words,
               "human/tasks": evidence.tasks, "human/tasks_closed": len(duel.scores),
               "human/judgements": duel.judgements, "human/win_rate": evidence.win_rate,
               "human/win_low": evidence.low, "human/win_high": evidence.high, "human/e_value": evidence.e_value,
               "human/futility_e_value": evidence.futility_e_value, "human/e_threshold": evidence.threshold,
               "human/decided_at_task": evidence.decided_at, "human/alpha": rule.alpha,
               "human/min_gain": rule.min_gain, "human/max_tasks": rule.max_tasks,
               "human/test": "betting e-process on task scores (always valid)",
               "human/by_annotator": duel.by_annotator}
    return evidence.verdict, metrics


def decide_promotions(*, project, max_tasks: int | None = None, actor=None) -> list[tuple[ModelVersion, str]]:
    """Decide every candidate policy of `project` against its active policy, oldest candidate first (after a
    promotion the next one is measured against the new active policy, on new duels). Returns [(version, verdict)]."""
    from training.services.registry import decide_candidate

    rule = promotion_rule(max_tasks=max_tasks)
    decided = []
    for candidate in selectors.promotion_candidates(project=project):
        rival = selectors.active_policy(project=project)
        if rival is None or rival.pk == candidate.pk:
            continue
        verdict, metrics = verdict_of(head_to_head(project=project, candidate=candidate, rival=rival), rule)
        metrics["human/rival"] = rival.name
        try:
            decided.append((decide_candidate(version=candidate, verdict=verdict, metrics=metrics, actor=actor), verdict))
        except ValidationError:  # decided meanwhile by another tick, or activated by hand
            continue
    return decided


def decide_all_promotions(*, max_tasks: int | None = None) -> list[tuple[ModelVersion, str]]:
    """`decide_promotions` for every project with a candidate policy (the maintenance tick's entry point)."""
    from feedback.models import Project

    projects = Project.objects.filter(model_versions__kind=ModelVersion.Kind.POLICY,
                                      model_versions__status=ModelVersion.Status.CANDIDATE).distinct()
    return [item for project in projects for item in decide_promotions(project=project, max_tasks=max_tasks)]
