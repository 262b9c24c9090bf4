#!/usr/bin/env python
"""Adaptive overlap against fixed overlap, with noisy synthetic annotators.

Each task compares two completions with a hidden true preference and a difficulty; each annotator has
an accuracy, lowered on hard tasks. Fixed overlap asks N judges per task; adaptive overlap
(`feedback.quality.needs_more_judgements`, the rule the queue uses) stops at the minimum when the judges
agree and asks again, up to the maximum, when they do not. Consensus accuracy: the majority's choice
against the truth (an even split counts half).

    .venv/bin/python bench/adaptive_overlap.py [--tasks 5000] [--annotators 40] [--seed 0]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from feedback import quality  # noqa: E402


def simulate(policy, *, tasks, accuracy, difficulty, rng):
    used, correct = 0, 0.0
    for t in range(tasks):
        judges = rng.permutation(len(accuracy))
        votes = []
        while True:
            if policy[0] == "fixed" and len(votes) >= policy[1]:
                break
            if policy[0] == "adaptive":
                rankings = [[[1], [2]] if v else [[2], [1]] for v in votes]
                if not quality.needs_more_judgements(rankings, min_judgements=policy[1], max_judgements=policy[2],
                                                     agreement_threshold=policy[3]):
                    break
            judge = judges[len(votes)]
            p_right = 0.5 + (accuracy[judge] - 0.5) * (1 - difficulty[t])
            votes.append(rng.random() < p_right)  # True: the judge prefers the truly better completion
        used += len(votes)
        right = sum(votes)
        correct += 1.0 if right * 2 > len(votes) else 0.5 if right * 2 == len(votes) else 0.0
    return used / tasks, correct / tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--annotators", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    accuracy = rng.uniform(0.65, 0.95, args.annotators)
    difficulty = rng.beta(1.2, 3.0, args.tasks)  # most tasks easy, some hard
    policies = [("fixed", 3), ("fixed", 5), ("adaptive", 3, 5, 0.75), ("adaptive", 2, 5, 0.75), ("adaptive", 3, 7, 0.75)]
    results = {}
    for policy in policies:
        per_task, acc = simulate(policy, tasks=args.tasks, accuracy=accuracy, difficulty=difficulty,
                                 rng=np.random.default_rng(args.seed + 1))
        name = "fixed_%d" % policy[1] if policy[0] == "fixed" else "adaptive_%d_to_%d" % policy[1:3]
        results[name] = (per_task, acc)
        print(f"{name}_judgements_per_task {per_task:.3f} judgements n={args.tasks} annotators={args.annotators}")
        print(f"{name}_consensus_accuracy {acc:.4f} share n={args.tasks} annotators={args.annotators}")
    for adaptive, fixed in (("adaptive_3_to_5", "fixed_5"), ("adaptive_2_to_5", "fixed_3"), ("adaptive_3_to_7", "fixed_5")):
        saved = 1 - results[adaptive][0] / results[fixed][0]
        print(f"savings_{adaptive}_vs_{fixed} {saved:.1%} judgements accuracy={results[adaptive][1]:.4f}"
              f" vs {results[fixed][1]:.4f} n={args.tasks}")


if __name__ == "__main__":
    main()
