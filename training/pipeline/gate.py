"""The publication gate: does a candidate policy beat its parent on held-out prompts, beyond noise and length?

A pure function of numbers. For each held-out prompt, several samples of the candidate and of the parent
were scored by a judge. The test, at one-sided level `alpha_k` (below):

1. per prompt, the difference of the mean rewards d (candidate − parent): paired, so prompt difficulty cancels;
   the lower bound is Student's t bound over prompts, mean(d) − t(1 − alpha_k; n − 1)·sd(d)/√n. (The percentile
   bootstrap this replaced passed 4.2% of null candidates on 8–10 prompts at a nominal 2.5%: it is too narrow
   on few prompts. Measured rates: docs/statistics/gates.md, `bench/stats_gates.py`.)
2. a length control: the reward is regressed on the answer length WITHIN each (prompt, policy) cell (each cell's
   mean removed from rewards and lengths), so the policy's own effect never leaks into the slope; the adjusted
   differences d − slope·Δlength get a bound whose standard error adds the slope's, Δlength̄²·se(slope)². When
   the raw bound passes but the adjusted one does not, length alone may explain the gain and the gate refuses.
3. repeated looks: every retrain of a project is judged on the same held-out prompts, so the k-th gate of a
   project (`look` = k) spends alpha_k = alpha·6/(π²k²); the sum over all k is alpha, so a chain of retrains
   passes a null candidate at most alpha of the time in all.
4. the judge: a reward model the policy optimised is no judge of it. `independent_judge=False` (no other reward
   model scored the answers) makes the report "unjudged": `passed` stays False whatever the numbers say, and
   `test_passed` keeps what the statistics alone said (the runner may register such a policy as a CANDIDATE for
   people to judge, never as proven better).

Refusals also cover too few prompts or samples per prompt and non-finite rewards. `verdict` says why in one
sentence. `gate_arrays` is the same rule vectorised over any leading axes (simulations call it directly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

PerPrompt = Sequence[Sequence[float]]  # one list of values per held-out prompt

ALPHA = 0.025  # one-sided: the nominal rate at which a candidate no better than its parent passes


@dataclass
class GateReport:
    passed: bool  # proven better by an independent judge (test_passed and judged)
    effect: float  # mean over prompts of (candidate − parent) mean reward
    lower: float  # one-sided (1 − alpha_k) lower t bound of the mean difference
    upper: float  # the matching upper bound
    n_prompts: int
    verdict: str  # one sentence in words
    length_delta: float = 0.0  # candidate − parent mean length (tokens)
    length_slope: float = 0.0  # reward per token of length, within (prompt, policy) cells
    adjusted_effect: float = 0.0  # effect with the length effect taken out
    adjusted_lower: float = 0.0  # its lower bound, the slope's uncertainty included
    margin: float = 0.0
    length_slope_se: float = 0.0
    alpha: float = ALPHA  # the level this look spent (alpha_k)
    look: int = 1  # which gate of the project this is (1 = the first on these held-out prompts)
    judged: bool = True  # False: no independent judge scored the answers ("unjudged")
    test_passed: bool = False  # what the statistics said, whoever judged

    def as_dict(self) -> dict:
        return asdict(self)


def alpha_for_look(look: int, alpha: float = ALPHA) -> float:
    """The level of the `look`-th gate on the same held-out prompts: alpha·6/(π²k²) (sums to alpha over all k)."""
    if look < 1:
        raise ValueError("look counts from 1")
    return alpha * 6.0 / (math.pi ** 2 * look ** 2)


def bootstrap_interval(differences: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                       confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap of the mean of `differences` (resampling them with replacement): (lower, upper).
    No longer the gate's rule (too narrow on few prompts); kept for comparisons (bench/stats_gates.py)."""
    d = torch.as_tensor(list(differences), dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(d), (resamples, len(d)), generator=generator)
    means = d[picks].mean(1)
    tail = (1.0 - confidence) / 2
    return float(torch.quantile(means, tail)), float(torch.quantile(means, 1.0 - tail))


def within_prompt_slope(rewards: PerPrompt, lengths: PerPrompt) -> float:
    """Least-squares slope of reward on length after removing each group's mean from both (0 if lengths never
    vary). The gate passes one group per (prompt, policy) cell."""
    xs, ys = [], []
    for r, n in zip(rewards, lengths):
        r_mean, n_mean = sum(r) / len(r), sum(n) / len(n)
        xs += [x - n_mean for x in n]
        ys += [y - r_mean for y in r]
    sxx = sum(x * x for x in xs)
    return sum(x * y for x, y in zip(xs, ys)) / sxx if sxx > 1e-12 else 0.0


def t_quantile(p: float, df) -> np.ndarray:
    """Student's t quantile (scipy.special's, a lighter import than scipy.stats)."""
    from scipy.special import stdtrit

    return stdtrit(df, p)


def cell_sums(rewards, lengths, axis: int = -1):
    """Per cell (the samples along `axis`): mean reward, mean length, Σ(x−x̄)², Σ(x−x̄)(y−ȳ), Σ(y−ȳ)², count."""
    y, x = np.asarray(rewards, dtype=np.float64), np.asarray(lengths, dtype=np.float64)
    ym, xm = y.mean(axis, keepdims=True), x.mean(axis, keepdims=True)
    dx, dy = x - xm, y - ym
    return (ym.squeeze(axis), xm.squeeze(axis), (dx * dx).sum(axis), (dx * dy).sum(axis), (dy * dy).sum(axis),
            np.full(ym.squeeze(axis).shape, y.shape[axis], dtype=np.float64))


def gate_arrays(d, dl, sxx, sxy, syy, n_obs, *, margin: float = 0.0, alpha: float = ALPHA,
                length_control: bool = True) -> dict[str, np.ndarray]:
    """The gate's statistics, vectorised: the last axis is the held-out prompt, any leading axes are independent
    replicates. Per prompt: d (candidate − parent mean reward), dl (mean length difference), and the within-cell
    sums of both cells added: sxx, sxy, syy (centred on each cell's own means) and n_obs (samples of both).

    Returns arrays over the leading axes: effect, lower, upper, length_delta, slope, slope_se, adjusted_effect,
    adjusted_lower, raw_pass (lower > margin), test_passed (both bounds > margin)."""
    d, dl = np.asarray(d, dtype=np.float64), np.asarray(dl, dtype=np.float64)
    n = d.shape[-1]
    q = t_quantile(1.0 - alpha, n - 1)
    effect, length_delta = d.mean(-1), dl.mean(-1)
    se = d.std(-1, ddof=1) / math.sqrt(n)
    lower, upper = effect - q * se, effect + q * se
    if length_control:
        total_xx, total_xy, total_yy = (np.asarray(s, dtype=np.float64).sum(-1) for s in (sxx, sxy, syy))
        varies = total_xx > 1e-12
        slope = np.where(varies, total_xy / np.where(varies, total_xx, 1.0), 0.0)
        # residual df: every observation, less one mean per cell (2 per prompt), less the slope
        df = np.maximum(np.asarray(n_obs, dtype=np.float64).sum(-1) - 2 * n - 1, 1.0)
        residual = np.maximum(total_yy - slope * total_xy, 0.0) / df
        slope_se = np.where(varies, np.sqrt(residual / np.where(varies, total_xx, 1.0)), 0.0)
    else:
        slope = np.zeros(effect.shape)
        slope_se = np.zeros(effect.shape)
    adjusted = d - slope[..., None] * dl
    adjusted_effect = adjusted.mean(-1)
    adjusted_se = np.sqrt(adjusted.var(-1, ddof=1) / n + (length_delta * slope_se) ** 2)
    adjusted_lower = adjusted_effect - q * adjusted_se
    raw_pass = lower > margin
    return {"effect": effect, "lower": lower, "upper": upper, "length_delta": length_delta, "slope": slope,
            "slope_se": slope_se, "adjusted_effect": adjusted_effect, "adjusted_lower": adjusted_lower,
            "raw_pass": raw_pass, "test_passed": raw_pass & (adjusted_lower > margin)}


def gate_samples(candidate, parent, candidate_lengths, parent_lengths, **kwargs) -> dict[str, np.ndarray]:
    """`gate_arrays` on rectangular samples: arrays shaped (..., prompts, samples), the same for all four."""
    cy, cx, cxx, cxy, cyy, cn = cell_sums(candidate, candidate_lengths)
    py, px, pxx, pxy, pyy, pn = cell_sums(parent, parent_lengths)
    return gate_arrays(cy - py, cx - px, cxx + pxx, cxy + pxy, cyy + pyy, cn + pn, **kwargs)


def _refuse(why: str, n_prompts: int, margin: float, alpha: float, look: int, judged: bool) -> GateReport:
    nan = float("nan")
    return GateReport(False, nan, nan, nan, n_prompts, why, nan, nan, nan, nan, margin, nan, alpha, look, judged)


def gate_test(
    candidate: PerPrompt, parent: PerPrompt, candidate_lengths: PerPrompt, parent_lengths: PerPrompt, *,
    margin: float = 0.0, min_prompts: int = 8, min_samples_per_prompt: int = 4, resamples: int = 2000,
    seed: int = 0, length_control: bool = True, alpha: float = ALPHA, look: int = 1, independent_judge: bool = True,
) -> GateReport:
    """Rewards (and lengths) per held-out prompt, candidate and parent, the prompts in the same order.

    `alpha`: the error budget of the project's whole chain of gates; this gate, the `look`-th on these held-out
    prompts, spends `alpha_for_look(look, alpha)`. `independent_judge`: whether the rewards come from a judge the
    candidate did not optimise (False: the verdict is "unjudged" and `passed` is False). `resamples` and `seed`
    are accepted for callers of the bootstrap rule this replaced; the t bound needs neither."""
    level = alpha_for_look(look, alpha)
    rows = [(c, p, cl, pl) for c, p, cl, pl in zip(candidate, parent, candidate_lengths, parent_lengths)]
    n = len(rows)
    refuse = lambda why: _refuse(why, n, margin, level, look, independent_judge)  # noqa: E731
    if n < min_prompts:
        return refuse(f"only {n} held-out prompt(s) were judged, fewer than the {min_prompts} the gate needs.")
    fewest = min(min(len(c), len(p)) for c, p, _, _ in rows)
    if fewest < max(min_samples_per_prompt, 2):
        return refuse(f"a prompt has only {fewest} sample(s), fewer than the {max(min_samples_per_prompt, 2)} "
                      "the gate needs.")
    if not all(math.isfinite(x) for c, p, cl, pl in rows for x in (*c, *p, *cl, *pl)):
        return refuse("the judge gave a non-finite reward (or a length was not finite), so nothing can be concluded.")
    per_prompt = []
    for c, p, cl, pl in rows:
        cy, cx, cxx, cxy, cyy, cn = cell_sums(c, cl)
        py, px, pxx, pxy, pyy, pn = cell_sums(p, pl)
        per_prompt.append((cy - py, cx - px, cxx + pxx, cxy + pxy, cyy + pyy, cn + pn))
    s = {k: float(v) for k, v in gate_arrays(*np.array(per_prompt, dtype=np.float64).T, margin=margin, alpha=level,
                                             length_control=length_control).items()}
    report = GateReport(False, s["effect"], s["lower"], s["upper"], n, "", s["length_delta"], s["slope"],
                        s["adjusted_effect"], s["adjusted_lower"], margin, s["slope_se"], level, look,
                        independent_judge, bool(s["test_passed"]))
    confidence = f"{1 - level:.4g}"
    if not s["raw_pass"]:
        report.verdict = (f"not better than the parent: the {confidence} lower bound of the reward gain, "
                          f"{report.lower:.3g}, does not exceed the margin {margin:g} over {n} prompts"
                          f"{_look_note(look)}.")
    elif not report.test_passed:
        direction = "longer" if report.length_delta >= 0 else "shorter"
        report.verdict = (f"the reward gain {report.effect:.3g} may be explained by length: answers are "
                          f"{abs(report.length_delta):.3g} tokens {direction} and, with length taken out (slope "
                          f"{report.length_slope:.3g} ± {report.length_slope_se:.2g} per token), the lower bound is "
                          f"{report.adjusted_lower:.3g}.")
    elif not independent_judge:
        report.verdict = (f"unjudged: no independent judge. The reward model the policy optimised scores a gain of "
                          f"{report.effect:.3g} (lower bound {report.lower:.3g}) over {n} prompts, which shows what "
                          "it learned to please, not that people prefer it: only people's head-to-head judgements "
                          "can promote it.")
    else:
        report.passed = True
        report.verdict = (f"better than the parent: reward gain {report.effect:.3g}, {confidence} lower bound "
                          f"{report.lower:.3g} (length-adjusted {report.adjusted_lower:.3g}) over {n} prompts, "
                          f"length change {report.length_delta:+.3g} tokens{_look_note(look)}.")
    return report


def _look_note(look: int) -> str:
    return "" if look == 1 else f" (gate {look} on these held-out prompts, so at a stricter level)"
