#!/usr/bin/env python
"""Human promotion's error rates, by seeded simulation through `training.pipeline.promotion_test.verdict_paths`
(exactly what `sequential_verdict` says when called after every closed task).

    .venv/bin/python bench/stats_promotion.py [--quick]

Simulated head-to-head tasks: overlap 3; each task has a latent win probability drawn from a beta distribution, so
two votes of one task correlate with `icc` (0 or 0.5); a vote is a tie with probability 0.1; the candidate's task
score is the mean of its 3 votes (1 win, 0.5 tie, 0 loss), whose expectation is the true win rate. The verdict is
looked at after every task. For comparison, the rule it replaced: Wilson's 95% interval on judgement counts, looked at
every 6 judgements once 30 are in (written out here, not imported).
"""

from __future__ import annotations

import math

import numpy as np

try:
    import _env  # noqa: F401  (project root on sys.path)
except ModuleNotFoundError:  # imported as bench.stats_promotion from the project root
    pass

from training.pipeline.promotion_test import PromotionRule, verdict_paths

OVERLAP, TIE, CHUNK = 3, 0.1, 2000


def votes(rng, runs: int, tasks: int, win_rate: float, icc: float) -> np.ndarray:
    latent = (win_rate - TIE / 2) / (1 - TIE)
    if icc > 0:
        size = (1 - icc) / icc
        p = rng.beta(latent * size, (1 - latent) * size, size=(runs, tasks, 1))
    else:
        p = np.full((runs, tasks, 1), latent)
    wins = (rng.random((runs, tasks, OVERLAP)) < p).astype(np.float32)
    return np.where(rng.random((runs, tasks, OVERLAP)) < TIE, np.float32(0.5), wins)


def old_rule_first_promotion(v: np.ndarray, every: int = 6, minimum: int = 30) -> np.ndarray:
    """The task count at which the Wilson rule first promoted (0: never)."""
    flat = v.reshape(v.shape[0], -1).astype(np.float64)
    looks = np.arange(every, flat.shape[1] + 1, every)
    looks = looks[looks >= minimum]
    wins, n, z = np.cumsum(flat, axis=1)[:, looks - 1], looks.astype(float), 1.959964
    p = wins / n
    low = (p + z * z / (2 * n) - z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    hit = low > 0.5
    return np.where(hit.any(1), np.ceil(looks[hit.argmax(1)] / OVERLAP), 0)


def simulate(seed: int, runs: int, tasks: int, win_rate: float, icc: float, **rule):
    """(codes, decided_at, old rule's first promotion) over `runs` runs, a chunk at a time."""
    rng = np.random.default_rng(seed)
    codes, at, old = [], [], []
    for start in range(0, runs, CHUNK):
        v = votes(rng, min(CHUNK, runs - start), tasks, win_rate, icc)
        c, a = verdict_paths(v.mean(axis=2), **rule)
        codes.append(c), at.append(a), old.append(old_rule_first_promotion(v))
    return np.concatenate(codes), np.concatenate(at), np.concatenate(old)


def _pct(x: float, n: int) -> str:
    return f"{100 * x:.2f}% (±{100 * 1.96 * math.sqrt(max(x * (1 - x), 1e-12) / n):.2f})"


def report(quick: bool = False) -> list[str]:
    null_runs, alt_runs = (2000, 1000) if quick else (20000, 5000)
    rule = PromotionRule()
    lines = [f"rule: betting e-process on task scores, alpha {rule.alpha}, bets tuned for +{rule.design_gain}, "
             f"futility at +{rule.min_gain}, horizon {rule.max_tasks} tasks; overlap {OVERLAP}, ties {TIE:.0%}, "
             f"looked at after every task"]
    for icc in (0.0, 0.5):
        codes, at, old = simulate(10 + int(10 * icc), null_runs, 1000, 0.5, icc)
        pure, pure_at, _ = simulate(10 + int(10 * icc), null_runs, 1000, 0.5, icc, min_gain=None, max_tasks=None)
        fp = [float(((codes == 1) & (at <= h)).mean()) for h in (90, 300, 1000)]
        fp_pure = float(((pure == 1) & (pure_at <= 1000)).mean())
        old_fp = [float(((old > 0) & (old <= h)).mean()) for h in (30, 100, 300)]
        lines.append(f"ICC {icc}: equal candidate (win rate 0.5), {null_runs} runs: promoted by 90 / 300 / 1000 tasks "
                     + " / ".join(_pct(x, null_runs) for x in fp)
                     + f"; e-process alone (no futility, no horizon) {_pct(fp_pure, null_runs)} by 1000; "
                     f"median tasks to a decision {np.median(at):.0f} (rejected {np.mean(codes == -1):.1%})")
        lines.append(f"ICC {icc}: old rule (Wilson on judgements, a look every 6): promoted by 30 / 100 / 300 tasks "
                     + " / ".join(_pct(x, null_runs) for x in old_fp))
        codes, at, _ = simulate(20 + int(10 * icc), alt_runs, 400, 0.60, icc)
        power = float(((codes == 1) & (at <= 200)).mean())
        lines.append(f"ICC {icc}: win rate 0.60, {alt_runs} runs: promoted within 200 tasks {_pct(power, alt_runs)}, "
                     f"ever (≤ 400) {np.mean(codes == 1):.1%}, rejected {np.mean(codes == -1):.2%}; median tasks to "
                     f"promotion {np.median(at[codes == 1]):.0f} (quartiles {np.percentile(at[codes == 1], 25):.0f}–"
                     f"{np.percentile(at[codes == 1], 75):.0f})")
        codes, at, _ = simulate(30 + int(10 * icc), alt_runs, 1000, 0.5 + rule.min_gain, icc, max_tasks=None)
        ruled_out = float(((codes == -1) & (at < 1000)).mean())
        lines.append(f"ICC {icc}: win rate {0.5 + rule.min_gain} (the least worthwhile gain): wrongly ruled out "
                     f"{_pct(ruled_out, alt_runs)}, promoted {np.mean(codes == 1):.1%} within 1000 tasks")
    return lines


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer simulated runs")
    for line in report(quick=parser.parse_args().quick):
        print(line)
