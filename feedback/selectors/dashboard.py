"""Figures for the project dashboard: progress, throughput, agreement, leaderboard, length bias.

Reads only: the judgements come from `selectors.evidence.judgement_evidence`, the statistics from
`feedback.quality` (pure numpy) on plain data, so the dashboard, trust and exports share one notion of consensus.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta

import numpy as np
from django.db.models import Avg, Count, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from feedback import quality
from feedback.models import ComparisonTask, Completion, Judgement, Membership, Project
from feedback.selectors.evidence import JudgementEvidence, judgement_evidence


def dashboard_figures(*, project: Project) -> dict:
    """Everything the dashboard page shows of the project, charts included."""
    data = judgement_evidence(project=project)
    votes = data.votes_by_task()
    annotators = annotator_throughput(project=project)
    agreement_by_annotator = {a: h / n for a, (h, n) in quality.agreement_counts(votes, data.trust).items() if n}
    gold_accuracy = {a: h / n for a, (h, n) in quality.gold_counts(data.gold_judgements(), data.gold).items() if n}
    for a in annotators:
        a["agreement"] = agreement_by_annotator.get(a["annotator"])
        a["gold_accuracy"] = gold_accuracy.get(a["annotator"])

    over_time, mean_agreement = agreement_over_time(data)
    leaderboard, style_board = model_leaderboards(data)
    per_hour = judgements_per_hour(project=project)
    return {
        "alpha_by_day": alpha_by_day(data),
        "annotator_pairs": annotator_pairs(data),
        "stats": project_stats(project=project),
        "annotators": annotators,
        "alpha": quality.krippendorff_alpha_from_tasks(votes),
        "mean_agreement": mean_agreement,
        "leaderboard": leaderboard,
        "style_leaderboard": style_board,
        "length_bias": length_bias(data),
        "charts": {"per_hour": per_hour, "agreement_over_time": over_time, "annotators": annotators,
                   "leaderboard": leaderboard, "leaderboard_axis": elo_axis(leaderboard)},
    }


def project_stats(*, project: Project) -> dict:
    tasks = ComparisonTask.objects.filter(project=project)
    by_status = dict(
        tasks.values("status").annotate(n=Count("id")).values_list("status", "n")
    )
    totals = tasks.aggregate(needed=Sum("judgements_needed"), done=Sum("judgements_done"))
    needed, done = totals["needed"] or 0, totals["done"] or 0
    return {
        "tasks_total": sum(by_status.values()),
        "tasks_open": by_status.get(ComparisonTask.Status.OPEN, 0),
        "tasks_complete": by_status.get(ComparisonTask.Status.COMPLETE, 0),
        "judgements_done": done,
        "judgements_needed": needed,
        "progress": (done / needed) if needed else 0.0,
        "annotators": Membership.objects.filter(project=project).count(),
        "prompts_without_tasks": project.prompts.filter(tasks__isnull=True).count(),
    }


def judgements_per_hour(*, project: Project, hours: int = 72) -> list[tuple[str, int]]:
    since = timezone.now() - timedelta(hours=hours)
    rows = (
        Judgement.objects.filter(task__project=project, created_at__gte=since)
        .annotate(hour=TruncHour("created_at")).values("hour").annotate(n=Count("id")).order_by("hour")
    )
    return [(row["hour"].strftime("%Y-%m-%d %H:00"), row["n"]) for row in rows]


def annotator_throughput(*, project: Project) -> list[dict]:
    rows = (
        Judgement.objects.filter(task__project=project).values("annotator__username")
        .annotate(n=Count("id"), seconds=Avg("seconds_spent")).order_by("-n")
    )
    trust = dict(Membership.objects.filter(project=project).values_list("user__username", "trust"))
    return [{"annotator": r["annotator__username"], "judgements": r["n"], "mean_seconds": round(r["seconds"] or 0, 1),
             "trust": trust.get(r["annotator__username"])} for r in rows]


def _weighted(data: JudgementEvidence, votes) -> list:
    return [(ranking, data.trust.get(annotator, 1.0)) for annotator, ranking, _ in votes]


def _last_day(votes) -> str:
    return max(created for _, _, created in votes).strftime("%Y-%m-%d")


def agreement_over_time(data: JudgementEvidence) -> tuple[list[tuple[str, float]], float | None]:
    """Mean leave-one-out pair agreement (each judge against the others; 0.5 is coin flipping) of tasks judged at
    least twice, tied pairs included, by the day of their last judgement."""
    per_day: dict[str, list[float]] = defaultdict(list)
    for votes in data.by_task.values():
        if len(votes) >= 2:
            per_day[_last_day(votes)].extend(p.agreement for p in quality.consensus_pairs(_weighted(data, votes))
                                             if p.agreement is not None)
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


def model_leaderboards(data: JudgementEvidence) -> tuple[list[dict], dict | None]:
    """Bradley–Terry strengths of the models behind the completions, from every judged pair of two models, with
    intervals that resample tasks (a task's battles share its answers and judges); and beside it the
    style-controlled board (answer length and markdown held equal, as LMArena does): {"board", "effects"}."""
    ids = _completion_ids(data)
    rows = _completion_values(ids, "model_name", "model_version__name", "text")
    values = {cid: (version or model_name or "unknown", text) for cid, model_name, version, text in rows}
    battles = [
        (values[a][0], values[b][0], outcome, task, a, b)
        for task, votes in data.by_task.items() for _, ranking, _ in votes
        for a, b, outcome in quality.pairs_from_ranking(ranking) if values[a][0] != values[b][0]
    ]
    if not battles:
        return [], None
    board = quality.leaderboard_from_battles([x[:4] for x in battles])
    if len(board) < 2:
        return board, None
    names = [row["model"] for row in board]
    index = {name: i for i, name in enumerate(names)}
    columns = list(zip(*battles))
    style = {cid: quality.style_of(values[cid][1]) for cid in {c for x in battles for c in x[4:]}}
    controlled, effects = quality.style_controlled_leaderboard(
        np.array([index[x] for x in columns[0]]), np.array([index[x] for x in columns[1]]), np.array(columns[2]),
        names, np.array([style[c] for c in columns[4]]), np.array([style[c] for c in columns[5]]),
        clusters=np.array(columns[3]))
    return board, {"board": controlled, "effects": effects}


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

