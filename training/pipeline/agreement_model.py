"""What the judges' agreement says about their labels: a model of independent judges, each right with probability
q about a pair's direction (a "one-coin" Dawid–Skene model), fitted to the leave-one-out agreement the exports carry
(`feedback.quality.consensus_pairs`: each judge against the consensus of the others, a tie among the others scoring
½). Pure Python, no Django: the reward model's ceiling and the iterative-DPO round's label smoothing use it.

- `expected_agreement(q, n)`: the mean leave-one-out agreement n such judges produce.
- `judge_accuracy(agreement, n_judgements)`: q from an observed mean agreement (the inverse; 0.5 for coin flips).
- `label_error(q, n, margin)`: the posterior probability that a consensus label is wrong, given how its votes split.
- `agreement_ceiling(…)`: the best accuracy any reward model can expect against these consensus labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Q_MAX = 0.999  # judges are never taken for infallible: a label's error stays above 0


def expected_agreement(q: float, n: int) -> float:
    """Mean leave-one-out agreement of n ≥ 2 judges, each right with probability q, votes never tied: each judge
    meets the majority of the n − 1 others (½ when they split evenly)."""
    if n < 2:
        raise ValueError("agreement needs at least two judges")
    others = n - 1
    total = 0.0
    for right in range(others + 1):
        p = math.comb(others, right) * q**right * (1 - q) ** (others - right)
        wrong = others - right
        total += p * (q if right > wrong else (1 - q) if right < wrong else 0.5)
    return total


def judge_accuracy(agreement: float | None, n_judgements: Sequence[int] | int) -> float | None:
    """The q at which `expected_agreement`, averaged over the pairs' judge counts, equals `agreement` (bisection;
    `expected_agreement` rises from 0.5 at q = ½ to 1 at q = 1). Agreement at or below chance gives 0.5; None when
    there is no agreement to fit or no pair was judged twice."""
    counts = [n_judgements] if isinstance(n_judgements, int) else [n for n in n_judgements if n >= 2]
    if agreement is None or not counts:
        return None

    def mean_expected(q: float) -> float:
        return sum(expected_agreement(q, n) for n in counts) / len(counts)

    if agreement <= 0.5:
        return 0.5
    lo, hi = 0.5, Q_MAX
    if agreement >= mean_expected(hi):
        return hi
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_expected(mid) < agreement else (lo, mid)
    return (lo + hi) / 2


def label_error(q: float, n: int, margin: float) -> float:
    """P(the consensus label is wrong | its votes): with a 50/50 prior on the direction and judges right with
    probability q, k votes for and n − k against give odds (q / (1 − q))^(2k − n); `margin` (the export's
    |for − against| / n) gives 2k − n = n · margin. A unanimous label of 3 judges at q = 0.8: 1.5%; a 2-to-1
    label: 20%; coin flips (q = ½): 50% whatever the votes."""
    q = min(max(q, 0.5), Q_MAX)
    evidence = n * margin * math.log(q / (1 - q))
    return 1.0 / (1.0 + math.exp(evidence))


def agreement_ceiling(agreement: Sequence[float | None], n_judgements: Sequence[int], margins: Sequence[float],
                      *, judge_agreement: float | None = None) -> float | None:
    """The expected accuracy of a reward model that knows the true preference, scored against these consensus
    labels: the mean over pairs of 1 − `label_error`. q comes from `judge_agreement` (the snapshot's mean
    agreement, tied pairs included) when given, else from the pairs' own agreement — which is too high when the
    pairs the judges split on were left out as ties (at overlap 2 with equal trust, every disagreement is a tie).
    None when no pair was judged twice."""
    judged = [(a, n) for a, n in zip(agreement, n_judgements) if a is not None and n >= 2]
    if not judged:
        return None
    observed = judge_agreement if judge_agreement is not None else sum(a for a, _ in judged) / len(judged)
    q = judge_accuracy(observed, [n for _, n in judged])
    rows = list(zip(n_judgements, margins))
    return sum(1.0 - label_error(q, max(int(n), 1), float(m or 0.0)) for n, m in rows) / len(rows)
