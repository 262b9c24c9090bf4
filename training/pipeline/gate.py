"""The publication gate: does a candidate policy beat its parent on held-out prompts, beyond noise and length?

A pure function of numbers. For each held-out prompt, several samples of the candidate and of the parent
were scored by a judge (a reward model PPO did not optimise, when there is one). The test:

1. per prompt, the difference of the mean rewards (candidate − parent): paired, so prompt difficulty cancels;
2. a seeded percentile bootstrap over prompts of the mean difference: the 95% interval [lower, upper]
   (2.5th and 97.5th percentiles); the candidate passes only when `lower > margin`;
3. a length control: the reward is regressed on the answer length within prompts (both policies' samples,
   each prompt's means removed), and the same bootstrap is run on the differences with the length effect
   taken out (`d − slope·Δlength`). When the raw bound passes but the length-adjusted one does not, the gain
   is explained by length alone and the gate refuses.

Refusals also cover too few prompts or samples per prompt and non-finite rewards. `verdict` says why in one
sentence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

PerPrompt = Sequence[Sequence[float]]  # one list of values per held-out prompt


@dataclass
class GateReport:
    passed: bool
    effect: float  # mean over prompts of (candidate − parent) mean reward
    lower: float  # 2.5th percentile of the bootstrapped mean difference
    upper: float  # 97.5th percentile
    n_prompts: int
    verdict: str  # one sentence in words
    length_delta: float = 0.0  # candidate − parent mean length (tokens)
    length_slope: float = 0.0  # reward per token of length, within prompts
    adjusted_effect: float = 0.0  # effect with the length effect taken out
    adjusted_lower: float = 0.0
    margin: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_interval(differences: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                       confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap of the mean of `differences` (resampling them with replacement): (lower, upper)."""
    d = torch.as_tensor(list(differences), dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(d), (resamples, len(d)), generator=generator)
    means = d[picks].mean(1)
    tail = (1.0 - confidence) / 2
    return float(torch.quantile(means, tail)), float(torch.quantile(means, 1.0 - tail))


def within_prompt_slope(rewards: PerPrompt, lengths: PerPrompt) -> float:
    """Least-squares slope of reward on length after removing each prompt's mean from both (0 if lengths never vary)."""
    xs, ys = [], []
    for r, n in zip(rewards, lengths):
        r_mean, n_mean = sum(r) / len(r), sum(n) / len(n)
        xs += [x - n_mean for x in n]
        ys += [y - r_mean for y in r]
    sxx = sum(x * x for x in xs)
    return sum(x * y for x, y in zip(xs, ys)) / sxx if sxx > 1e-12 else 0.0


def _refuse(why: str, n_prompts: int, margin: float) -> GateReport:
    nan = float("nan")
    return GateReport(False, nan, nan, nan, n_prompts, why, nan, nan, nan, nan, margin)


def gate_test(
    candidate: PerPrompt, parent: PerPrompt, candidate_lengths: PerPrompt, parent_lengths: PerPrompt, *,
    margin: float = 0.0, min_prompts: int = 8, min_samples_per_prompt: int = 4, resamples: int = 2000,
    seed: int = 0, length_control: bool = True,
) -> GateReport:
    """Rewards (and lengths) per held-out prompt, candidate and parent, the prompts in the same order."""
    rows = [(c, p, cl, pl) for c, p, cl, pl in zip(candidate, parent, candidate_lengths, parent_lengths)]
    n = len(rows)
    if n < min_prompts:
        return _refuse(f"only {n} held-out prompt(s) were judged, fewer than the {min_prompts} the gate needs.", n, margin)
    fewest = min(min(len(c), len(p)) for c, p, _, _ in rows)
    if fewest < min_samples_per_prompt:
        return _refuse(f"a prompt has only {fewest} sample(s), fewer than the {min_samples_per_prompt} the gate needs.",
                       n, margin)
    if not all(math.isfinite(x) for c, p, _, _ in rows for x in (*c, *p)):
        return _refuse("the judge gave a non-finite reward, so nothing can be concluded.", n, margin)

    def mean(xs: Sequence[float]) -> float:
        return sum(xs) / len(xs)

    diffs = [mean(c) - mean(p) for c, p, _, _ in rows]
    length_diffs = [mean(cl) - mean(pl) for _, _, cl, pl in rows]
    slope = within_prompt_slope([list(c) + list(p) for c, p, _, _ in rows],
                                [list(cl) + list(pl) for _, _, cl, pl in rows]) if length_control else 0.0
    adjusted = [d - slope * dl for d, dl in zip(diffs, length_diffs)]
    lower, upper = bootstrap_interval(diffs, resamples=resamples, seed=seed)
    adjusted_lower, _ = bootstrap_interval(adjusted, resamples=resamples, seed=seed)
    report = GateReport(False, mean(diffs), lower, upper, n, "", mean(length_diffs), slope, mean(adjusted),
                        adjusted_lower, margin)
    if lower <= margin:
        report.verdict = (f"not better than the parent: the 95% lower bound of the reward gain, {lower:.3g}, "
                          f"does not exceed the margin {margin:g} over {n} prompts.")
    elif adjusted_lower <= margin:
        direction = "longer" if report.length_delta >= 0 else "shorter"
        report.verdict = (f"the reward gain {report.effect:.3g} is explained by length: answers are "
                          f"{abs(report.length_delta):.3g} tokens {direction} and, with length taken out, the lower "
                          f"bound is {adjusted_lower:.3g}.")
    else:
        report.passed = True
        report.verdict = (f"better than the parent: reward gain {report.effect:.3g} with 95% interval "
                          f"[{lower:.3g}, {upper:.3g}] over {n} prompts, length change {report.length_delta:+.3g} tokens.")
    return report
