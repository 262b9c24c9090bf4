#!/usr/bin/env python
"""Bradley–Terry leaderboard speed: 1M judgements, 100 bootstrap rounds.

    .venv/bin/python bench/leaderboard.py [--judgements 1000000] [--models 20] [--rounds 100]

Prints `name value unit n=… settings` lines. A benchmark, not a test.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from feedback import quality  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--judgements", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    truth = rng.normal(0, 1, args.models)
    a = rng.integers(0, args.models, args.judgements)
    b = (a + rng.integers(1, args.models, args.judgements)) % args.models
    p = 1 / (1 + np.exp(truth[b] - truth[a]))
    draw = rng.random(args.judgements)
    outcome = np.where(draw < 0.9 * p, 1, np.where(draw < 0.9, -1, 0))
    names = [f"model-{i}" for i in range(args.models)]

    timings = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        board = quality.leaderboard(a, b, outcome, names, rounds=args.rounds)
        timings.append(time.perf_counter() - started)
    settings = f"models={args.models} rounds={args.rounds} ties=10%"
    print(f"bt_bootstrap_seconds {min(timings):.3f} s n={args.judgements} {settings} (best of {args.repeats})")
    print(f"bt_bootstrap_judgements_per_s {args.judgements / min(timings):.0f} 1/s n={args.judgements} {settings}")
    order = [int(row["model"].split("-")[1]) for row in board]
    true_order = list(np.argsort(-truth))
    print(f"bt_rank_correlation {np.corrcoef(order, true_order)[0, 1]:.3f} pearson n={args.judgements} {settings}")
    widths = [row["upper"] - row["lower"] for row in board]
    print(f"bt_ci_width_median {np.median(widths):.1f} elo n={args.judgements} {settings}")


if __name__ == "__main__":
    main()
