"""Figures for the project dashboard: progress, throughput, agreement, leaderboard, length bias.

Reads only; statistics come from `feedback.quality` (pure numpy) on plain arrays built here.
"""

from __future__ import annotations

from collections import defaultdict

from feedback import exports, quality, selectors
from feedback.models import Completion, ComparisonTask, Judgement, Membership, Project

MAX_JUDGEMENTS_ANALYSED = 200_000


def _judgement_rows(project: Project):
    return list(
        Judgement.objects.filter(task__project=project).order_by("-id")
        .values_list("id", "task_id", "annotator__username", "ranking", "created_at")[:MAX_JUDGEMENTS_ANALYSED]
    )


def _evidence(project: Project):
    rows = _judgement_rows(project)
    gold = dict(ComparisonTask.objects.filter(project=project, is_gold=True).values_list("id", "gold_ranking"))
    trust = dict(Membership.objects.filter(project=project).values_list("user__username", "trust"))
    by_task: dict[int, list] = defaultdict(list)
    for _, task_id, annotator, ranking, created_at in rows:
        if task_id not in gold:
            by_task[task_id].append((annotator, ranking, created_at))
    return rows, gold, trust, by_task


def trust_evidence(*, project: Project) -> dict[str, dict[str, int]]:
    """Per annotator: gold pairs right/total and pairs agreeing with the others' consensus/total."""
    rows, gold, trust, by_task = _evidence(project)
    evidence: dict[str, dict[str, int]] = defaultdict(dict)
    for annotator, (hits, n) in annotator_agreement_counts(by_task, trust).items():
        evidence[annotator].update(agree=hits, agree_total=n)
    for annotator, (hits, n) in gold_counts(rows, gold).items():
        evidence[annotator].update(gold_correct=hits, gold_total=n)
    return dict(evidence)


def build(*, project: Project) -> dict:
    rows, gold, trust, by_task = _evidence(project)
    annotators = selectors.annotator_throughput(project=project)
    agreement_by_annotator = {a: h / n for a, (h, n) in annotator_agreement_counts(by_task, trust).items() if n}
    gold_accuracy = {a: h / n for a, (h, n) in gold_counts(rows, gold).items() if n}
    for a in annotators:
        a["agreement"] = agreement_by_annotator.get(a["annotator"])
        a["gold_accuracy"] = gold_accuracy.get(a["annotator"])

    over_time, mean_agreement = agreement_over_time(by_task, trust)
    leaderboard = model_leaderboard(project, by_task)
    length = length_bias(project, by_task, trust)
    alpha = quality.krippendorff_alpha_from_tasks({task: [(a, r) for a, r, _ in votes] for task, votes in by_task.items()})
    per_hour = selectors.judgements_per_hour(project=project)
    return {
        "alpha_by_day": alpha_by_day(by_task),
        "annotator_pairs": annotator_pairs(by_task),
        "stats": selectors.project_stats(project=project),
        "annotators": annotators,
        "alpha": alpha,
        "mean_agreement": mean_agreement,
        "leaderboard": leaderboard,
        "length_bias": length,
        "charts": {"per_hour": per_hour, "agreement_over_time": over_time, "annotators": annotators,
                   "leaderboard": leaderboard},
    }


def annotator_agreement_counts(by_task: dict, trust: dict) -> dict[str, tuple[int, int]]:
    """Each annotator's pairs agreeing with the consensus of the others (own vote left out), and all compared."""
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for votes in by_task.values():
        if len(votes) < 2:
            continue
        for i, (annotator, ranking, _) in enumerate(votes):
            others = [(r, trust.get(a, 1.0)) for j, (a, r, _) in enumerate(votes) if j != i]
            consensus = {(p.chosen, p.rejected) for p in exports.consensus_pairs(others) if p.chosen is not None}
            for a, b, outcome in quality.pairs_from_ranking(ranking):
                if outcome == 0 or not ({(a, b), (b, a)} & consensus):
                    continue
                mine = (a, b) if outcome > 0 else (b, a)
                hits[annotator][0] += mine in consensus
                hits[annotator][1] += 1
    return {a: (h, n) for a, (h, n) in hits.items()}


def gold_counts(rows, gold: dict) -> dict[str, tuple[int, int]]:
    """An annotator's gold pairs matching the known answer, and all their decided gold pairs."""
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _, task_id, annotator, ranking, _ in rows:
        if task_id not in gold or not gold[task_id]:
            continue
        truth = {(a, b): o for a, b, o in quality.pairs_from_ranking(gold[task_id])}
        for a, b, outcome in quality.pairs_from_ranking(ranking):
            if truth.get((a, b), 0) != 0:
                hits[annotator][0] += outcome == truth[(a, b)]
                hits[annotator][1] += 1
    return {a: (h, n) for a, (h, n) in hits.items()}


def agreement_over_time(by_task: dict, trust: dict) -> tuple[list[tuple[str, float]], float | None]:
    """Mean pair agreement of tasks judged at least twice, by the day of their last judgement."""
    per_day: dict[str, list[float]] = defaultdict(list)
    for votes in by_task.values():
        if len(votes) < 2:
            continue
        day = max(created for _, _, created in votes).strftime("%Y-%m-%d")
        for pair in exports.consensus_pairs([(r, trust.get(a, 1.0)) for a, r, _ in votes]):
            per_day[day].append(pair.agreement)
    series = [(day, sum(v) / len(v)) for day, v in sorted(per_day.items())]
    everything = [x for v in per_day.values() for x in v]
    return series, (sum(everything) / len(everything) if everything else None)


def _models_of(by_task: dict) -> dict[int, str]:
    completion_ids = {cid for votes in by_task.values() for _, ranking, _ in votes for group in ranking for cid in group}
    names = {}
    for start in range(0, len(completion_ids), 5000):
        chunk = list(completion_ids)[start : start + 5000]
        for cid, model_name, version in Completion.objects.filter(pk__in=chunk).values_list("id", "model_name", "model_version__name"):
            names[cid] = version or model_name or "unknown"
    return names


def model_leaderboard(project: Project, by_task: dict) -> list[dict]:
    """Bradley–Terry strengths of the models behind the completions, from every judged pair of two models."""
    names = _models_of(by_task)
    battles = []
    for votes in by_task.values():
        for _, ranking, _ in votes:
            for a, b, outcome in quality.pairs_from_ranking(ranking):
                if names.get(a) != names.get(b):
                    battles.append((names[a], names[b], outcome))
    if not battles:
        return []
    return quality.leaderboard_from_battles(battles)


def length_bias(project: Project, by_task: dict, trust: dict) -> dict:
    lengths = {}
    completion_ids = {cid for votes in by_task.values() for _, ranking, _ in votes for group in ranking for cid in group}
    ids = list(completion_ids)
    for start in range(0, len(ids), 5000):
        for cid, text in Completion.objects.filter(pk__in=ids[start : start + 5000]).values_list("id", "text"):
            lengths[cid] = len(text)
    longer_wins = decided = 0
    for votes in by_task.values():
        for pair in exports.consensus_pairs([(r, trust.get(a, 1.0)) for a, r, _ in votes]):
            if pair.chosen is None or lengths[pair.chosen] == lengths[pair.rejected]:
                continue
            decided += 1
            longer_wins += lengths[pair.chosen] > lengths[pair.rejected]
    if not decided:
        return {"decided": 0}
    share = longer_wins / decided
    lower, upper = quality.wilson_interval(longer_wins, decided)
    return {"decided": decided, "share": share, "lower": lower, "upper": upper}


def alpha_by_day(by_task: dict) -> list[tuple[str, float | None]]:
    """Krippendorff's alpha of the tasks finished each day (a day's tasks are one batch)."""
    per_day: dict[str, dict] = defaultdict(dict)
    for task, votes in by_task.items():
        if len(votes) > 1:
            day = max(created for _, _, created in votes).strftime("%Y-%m-%d")
            per_day[day][task] = [(a, r) for a, r, _ in votes]
    return [(day, quality.krippendorff_alpha_from_tasks(tasks)) for day, tasks in sorted(per_day.items())]


def annotator_pairs(by_task: dict) -> list[dict]:
    """Pairwise agreement between annotators on the pairs both judged (decided votes only)."""
    shared: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for votes in by_task.values():
        outcomes = {a: {(x, y): o for x, y, o in quality.pairs_from_ranking(r)} for a, r, _ in votes}
        names = sorted(outcomes)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                for pair, outcome in outcomes[first].items():
                    other = outcomes[second].get(pair)
                    if other is None:
                        continue
                    shared[(first, second)][0] += outcome == other
                    shared[(first, second)][1] += 1
    return [{"a": a, "b": b, "shared_pairs": n, "agreement": hits / n} for (a, b), (hits, n) in sorted(shared.items()) if n]


def disputed_tasks(*, project: Project, limit: int = 50) -> list[dict]:
    """Tasks judged at least twice whose judges disagree most (lowest mean pair agreement), not yet adjudicated."""
    rows, gold, trust, by_task = _evidence(project)
    adjudicated = set(ComparisonTask.objects.filter(project=project, adjudication__isnull=False).values_list("id", flat=True))
    scored = []
    for task, votes in by_task.items():
        if len(votes) < 2 or task in adjudicated:
            continue
        pairs = exports.consensus_pairs([(r, trust.get(a, 1.0)) for a, r, _ in votes])
        agreement = sum(p.agreement for p in pairs) / len(pairs) if pairs else 1.0
        if agreement < 1.0:
            scored.append({"task_id": task, "agreement": agreement, "judgements": len(votes)})
    return sorted(scored, key=lambda t: t["agreement"])[:limit]
