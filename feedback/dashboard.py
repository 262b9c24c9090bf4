"""Figures for the project dashboard: progress, throughput, agreement, leaderboard, length bias.

Reads only: the judgements come from `selectors.judgement_evidence`, the statistics from `feedback.quality`
(pure numpy) on plain data, so the dashboard, trust and exports share one notion of consensus.
"""

from __future__ import annotations

import math
from collections import defaultdict

from feedback import quality, selectors
from feedback.models import Completion, Project
from feedback.selectors import JudgementEvidence


def build(*, project: Project) -> dict:
    data = selectors.judgement_evidence(project=project)
    votes = data.votes_by_task()
    annotators = selectors.annotator_throughput(project=project)
    agreement_by_annotator = {a: h / n for a, (h, n) in quality.agreement_counts(votes, data.trust).items() if n}
    gold_accuracy = {a: h / n for a, (h, n) in quality.gold_counts(data.gold_judgements(), data.gold).items() if n}
    for a in annotators:
        a["agreement"] = agreement_by_annotator.get(a["annotator"])
        a["gold_accuracy"] = gold_accuracy.get(a["annotator"])

    over_time, mean_agreement = agreement_over_time(data)
    leaderboard = model_leaderboard(data)
    per_hour = selectors.judgements_per_hour(project=project)
    return {
        "alpha_by_day": alpha_by_day(data),
        "annotator_pairs": annotator_pairs(data),
        "stats": selectors.project_stats(project=project),
        "annotators": annotators,
        "alpha": quality.krippendorff_alpha_from_tasks(votes),
        "mean_agreement": mean_agreement,
        "leaderboard": leaderboard,
        "length_bias": length_bias(data),
        "charts": {"per_hour": per_hour, "agreement_over_time": over_time, "annotators": annotators,
                   "leaderboard": leaderboard, "leaderboard_axis": elo_axis(leaderboard)},
    }


def _weighted(data: JudgementEvidence, votes) -> list:
    return [(ranking, data.trust.get(annotator, 1.0)) for annotator, ranking, _ in votes]


def _last_day(votes) -> str:
    return max(created for _, _, created in votes).strftime("%Y-%m-%d")


def agreement_over_time(data: JudgementEvidence) -> tuple[list[tuple[str, float]], float | None]:
    """Mean pair agreement of tasks judged at least twice, by the day of their last judgement."""
    per_day: dict[str, list[float]] = defaultdict(list)
    for votes in data.by_task.values():
        if len(votes) >= 2:
            per_day[_last_day(votes)].extend(p.agreement for p in quality.consensus_pairs(_weighted(data, votes)))
    series = [(day, sum(v) / len(v)) for day, v in sorted(per_day.items())]
    everything = [x for v in per_day.values() for x in v]
    return series, (sum(everything) / len(everything) if everything else None)


def _completion_ids(data: JudgementEvidence) -> list[int]:
    return list({cid for votes in data.by_task.values() for _, ranking, _ in votes for group in ranking for cid in group})


def _completion_values(ids: list[int], *fields: str) -> list[tuple]:
    rows = []
    for start in range(0, len(ids), 5000):
        rows += Completion.objects.filter(pk__in=ids[start : start + 5000]).values_list("id", *fields)
    return rows


def model_leaderboard(data: JudgementEvidence) -> list[dict]:
    """Bradley–Terry strengths of the models behind the completions, from every judged pair of two models."""
    names = {cid: version or model_name or "unknown"
             for cid, model_name, version in _completion_values(_completion_ids(data), "model_name", "model_version__name")}
    battles = [
        (names[a], names[b], outcome)
        for votes in data.by_task.values() for _, ranking, _ in votes
        for a, b, outcome in quality.pairs_from_ranking(ranking) if names.get(a) != names.get(b)
    ]
    return quality.leaderboard_from_battles(battles) if battles else []


def elo_axis(leaderboard: list[dict], step: int = 25) -> dict | None:
    """The leaderboard chart's x range on the Elo scale: every interval and score inside, padded to `step`."""
    if not leaderboard:
        return None
    low = min(min(m["lower"], m["score"]) for m in leaderboard)
    high = max(max(m["upper"], m["score"]) for m in leaderboard)
    return {"min": step * math.floor((low - step / 2) / step), "max": step * math.ceil((high + step / 2) / step)}


def length_bias(data: JudgementEvidence) -> dict:
    """How often the consensus chose the longer completion (pairs of equal length left out), with a Wilson interval."""
    lengths = {cid: len(text) for cid, text in _completion_values(_completion_ids(data), "text")}
    longer_wins = decided = 0
    for votes in data.by_task.values():
        for pair in quality.consensus_pairs(_weighted(data, votes)):
            if pair.chosen is None or lengths[pair.chosen] == lengths[pair.rejected]:
                continue
            decided += 1
            longer_wins += lengths[pair.chosen] > lengths[pair.rejected]
    if not decided:
        return {"decided": 0}
    lower, upper = quality.wilson_interval(longer_wins, decided)
    return {"decided": decided, "share": longer_wins / decided, "lower": lower, "upper": upper}


def alpha_by_day(data: JudgementEvidence) -> list[tuple[str, float | None]]:
    """Krippendorff's alpha of the tasks finished each day (a day's tasks are one batch)."""
    per_day: dict[str, dict] = defaultdict(dict)
    for task, votes in data.by_task.items():
        if len(votes) > 1:
            per_day[_last_day(votes)][task] = [(a, r) for a, r, _ in votes]
    return [(day, quality.krippendorff_alpha_from_tasks(tasks)) for day, tasks in sorted(per_day.items())]


def annotator_pairs(data: JudgementEvidence) -> list[dict]:
    """Pairwise agreement between annotators on the pairs both judged (decided votes only)."""
    shared: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for votes in data.by_task.values():
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

