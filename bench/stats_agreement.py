#!/usr/bin/env python
"""Agreement, leaderboard intervals and iterative-DPO weights, by seeded simulation through the product's own
functions (`feedback.quality`, `training.pipeline.rounds.weights`

, `training.pipeline.agreement_model`).

    .venv/bin/python bench/stats_agreement.py [--quick]

1. Agreement of coin-flip judges (each ranks K answers uniformly at random, equal trust) at overlap 2, 3 and 5:
   the product's leave-one-out agreement over every judged pair (ties included) and over the exported rows, beside
   the rule it replaced (each judge scored against a consensus that includes their own vote; written out here).
2. Leaderboard interval coverage: 4 models, tasks of K = 4 answers (one per model) ranked by 3 judges who share the
   task's answers (answer quality = model strength + N(0, 0.8²), each judge adds Gumbel noise: Plackett–Luce);
   120 tasks per board. The truth is the Bradley–Terry fit on 200,000 such tasks. Coverage of the 95% intervals,
   pooled over the 4 models, resampling battles (the old rule) and resampling tasks (the product's).
3. The share of an iterative-DPO round's loss weight that comes from people, in a default round (32 prompts,
   K = 4, 16 pairs to people judged by 3 judges who are right 75% of the time, self-rated confidence 1–5 uniform,
   reward-model rewards N(0, 1) on its own Bradley–Terry scale): the old weights (people: consensus margin ×
   (confidence − 1)/4; every other pair 1.0) and the product's (`round_pair_weights`).
"""

from __future__ import annotations

import numpy as np

try:
    import _env  # noqa: F401  (project root on sys.path)
except ModuleNotFoundError:  # imported as bench.stats_agreement from the project root
    pass

from feedback import quality
from training.pipeline.rounds.weights import round_pair_weights

TRUTH = np.array([-0.4, -0.1, 0.15, 0.35])


def self_inclusive_agreement(votes) -> list[float]:
    """The replaced rule: per pair, the share of judges whose vote equals the consensus of all (their own vote in)."""
    per_pair: dict = {}
    for ranking, weight in votes:
        for a, b, outcome in quality.pairs_from_ranking(ranking):
            per_pair.setdefault((a, b), []).append((outcome, weight))
    shares = []
    for pair_votes in per_pair.values():
        for_a = sum(w for o, w in pair_votes if o > 0)
        for_b = sum(w for o, w in pair_votes if o < 0)
        direction = (for_a > for_b) - (for_a < for_b)
        if direction:  # the old export dropped the ties
            shares.append(sum(o == direction for o, _ in pair_votes) / len(pair_votes))
    return shares


def agreement_lines(tasks: int) -> list[str]:
    lines = ["coin-flip judges, equal trust: mean agreement (0.5 = chance)",
             "  overlap  K  every pair (ties in)  exported rows  old rule (rows)"]
    for overlap in (2, 3, 5):
        for k in (2, 4):
            rng = np.random.default_rng(overlap * 10 + k)
            every, rows, old = [], [], []
            for _ in range(tasks):
                votes = [([[c] for c in rng.permutation(k).tolist()], 1.0) for _ in range(overlap)]
                for pair in quality.consensus_pairs(votes):
                    every.append(pair.agreement)
                    if pair.chosen is not None:
                        rows.append(pair.agreement)
                old += self_inclusive_agreement(votes)
            se = np.std(every) / np.sqrt(len(every))
            lines.append(f"  {overlap:>7}  {k}  {np.mean(every):.3f} ± {1.96 * se:.3f}        {np.mean(rows):.3f}"
                         f"          {np.mean(old):.3f}")
    return lines


def simulate_tasks(rng, n_tasks: int, judges: int = 3, answer_spread: float = 0.8):
    m = TRUTH.size
    quality_of = TRUTH[None, :] + answer_spread * rng.standard_normal((n_tasks, m))
    utility = quality_of[:, None, :] + rng.gumbel(size=(n_tasks, judges, m))
    i, j = np.triu_indices(m, 1)
    outcome = np.where(utility[:, :, i] > utility[:, :, j], 1, -1)
    task = np.broadcast_to(np.arange(n_tasks)[:, None, None], outcome.shape)
    return (np.broadcast_to(i, outcome.shape).ravel(), np.broadcast_to(j, outcome.shape).ravel(), outcome.ravel(),
            task.ravel())


def coverage_lines(replicates: int, n_tasks: int = 120) -> list[str]:
    a, b, outcome, _ = simulate_tasks(np.random.default_rng(99), 200_000)
    truth = quality.to_elo(quality.bradley_terry(quality.aggregate_battles(a, b, outcome, TRUTH.size)))
    names = [str(i) for i in range(TRUTH.size)]
    rng = np.random.default_rng(7)
    hits = {"battles": [], "tasks": []}
    widths = {"battles": [], "tasks": []}
    for rep in range(replicates):
        a, b, outcome, task = simulate_tasks(rng, n_tasks)
        for how, clusters in (("battles", None), ("tasks", task)):
            for row in quality.leaderboard(a, b, outcome, names, clusters=clusters, rounds=200, seed=rep):
                hits[how].append(row["lower"] <= truth[int(row["model"])] <= row["upper"])
                widths[how].append(row["upper"] - row["lower"])
    lines = [f"leaderboard 95% intervals, {n_tasks} tasks × 3 judges × 6 battles, {replicates} boards, 4 models:"]
    for how in ("battles", "tasks"):
        rate = float(np.mean(hits[how]))
        se = np.sqrt(rate * (1 - rate) / len(hits[how]))
        lines.append(f"  resampling {how:<8} coverage {rate:.3f} ± {1.96 * se:.3f}   mean width "
                     f"{np.mean(widths[how]):.0f} Elo")
    lines.append(f"  width ratio tasks / battles: {np.mean(widths['tasks']) / np.mean(widths['battles']):.2f}")
    return lines


def round_rows(rng, q: float = 0.75, prompts: int = 32, k: int = 4, budget: int = 16, judges: int = 3):
    people = []
    for _ in range(budget):
        votes = [([[1], [2]] if rng.random() < q else [[2], [1]], 1.0) for _ in range(judges)]
        (pair,) = quality.consensus_pairs(votes)
        people.append({"margin": pair.margin, "n_judgements": judges, "agreement": pair.agreement,
                       "confidence": float(rng.integers(1, 6, judges).mean()), "prompt_id": "h"})
    rewards = rng.normal(0, 1, (prompts, k))
    machine = [{"gap": float(g), "prompt_id": f"m{i}"} for i, g in enumerate(rewards.max(1) - rewards.min(1))]
    all_pairs = prompts * k * (k - 1) // 2
    return people, machine, all_pairs - budget


def weight_lines(rounds: int) -> list[str]:
    rng = np.random.default_rng(3)
    old, new, smoothing = [], [], []
    for _ in range(rounds):
        people, machine, other_pairs = round_rows(rng)
        old_people = sum(r["margin"] * (r["confidence"] - 1) / 4 for r in people)
        old.append(old_people / (old_people + other_pairs))
        weighted, _, figures = round_pair_weights(people, machine, judge_agreement=0.625)
        new.append(figures["people_weight_share"])
        smoothing.append(np.mean([r["smoothing"] for r in weighted]))
    return ["iterative DPO, default round (16 pairs to people, 32 prompts × K = 4), share of loss weight from people:",
            f"  old weights (margin × (confidence − 1)/4; 176 reward-model pairs at 1.0): {np.mean(old):.3f}",
            f"  product (confidence factor ½–1, best-vs-worst pairs × (2p − 1), p calibrated): {np.mean(new):.3f}",
            f"  mean label smoothing of people's pairs at judge accuracy 0.75 (agreement 0.625): "
            f"{np.mean(smoothing):.3f}"]


def report(quick: bool = False) -> list[str]:
    return [*agreement_lines(1000 if quick else 5000), "", *coverage_lines(100 if quick else 400), "",
            *weight_lines(50 if quick else 200)]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer simulated runs")
    for line in report(quick=parser.parse_args().quick):
        print(line)
