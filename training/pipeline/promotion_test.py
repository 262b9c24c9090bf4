"""Human promotion as an always-valid sequential test on task-level scores (betting e-processes).

A candidate policy meets the active one in blind comparison tasks. Each closed task gives one number, the
candidate's mean score over that task's judgements (1 a win, 0.5 a tie, 0 a loss): the judges of one task see the
same two answers, so the task, not the judgement, is the independent unit. The scores x_1, x_2, … in [0, 1], in the
order the tasks closed, are tested for H0: mean <= 0.5 (the candidate is no better) by betting
(Waudby-Smith & Ramdas 2023, "Estimating means of bounded random variables by betting", JRSS-B):

    K_t = prod_{i<=t} (1 + lambda_i (x_i - 0.5)),   0 <= lambda_i < 2, lambda_i chosen from x_1 … x_{i-1} only.

Under H0, K_t is a non-negative supermartingale with K_0 = 1, so by Ville's inequality P(sup_t K_t >= 1/alpha) <=
alpha: promoting the first time the capital reaches 1/alpha keeps the false-promotion rate at alpha however often
(after every task, at every tick) and however long one looks. The bet is Kelly's for a gain of `design_gain` with a
plug-in variance, lambda_i = design_gain / (v_{i-1} + design_gain^2), capped at 0.75 / 0.5 (design_gain 0.08 by
default: measured, it reaches 1/alpha sooner for a 0.60 candidate than bets tuned for 0.10); v_{i-1} is the running
variance of the earlier scores (shrunk towards 0.1 by 5 pseudo-tasks, so the first bets are moderate).

Rejection ("futility") is the mirror test of H0': mean >= 0.5 + min_gain (the candidate is worth having), with the
capital prod (1 + lambda_i (0.5 + min_gain - x_i)) and bets tuned for a shortfall of min_gain: when it reaches
1/futility_alpha the candidate is rejected as "not better by min_gain". A candidate at least min_gain better is thus
wrongly rejected at most futility_alpha of the time. After `max_tasks` tasks without either, the candidate is
rejected as "not shown better" (the horizon; it only removes chances to promote, so validity is untouched).

The evidence also carries a confidence sequence for the win rate: every value m the same bets reject (on either
side, at any time so far) is left out; it is valid at every time simultaneously (the running intersection).
The verdict is the first of the two crossings, so it does not depend on how often it was looked at.

Pure numpy, no Django: the product calls `promotion_evidence` at every tick; `verdict_paths` does the same for many
simulated runs at once (bench/stats_promotion.py, the tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PROMOTE, REJECT, WAIT = "promote", "reject", "wait"
NULL_RATE = 0.5  # the win rate of a candidate exactly as good as the active policy
BET_CAP = 0.75  # the largest bet, as a share of the largest one that cannot lose everything
PRIOR_VARIANCE, PRIOR_TASKS = 0.1, 5.0  # what the first bets assume about the spread of task scores
CS_GRID = np.linspace(0.0025, 0.9975, 399)  # the confidence sequence's resolution


@dataclass(frozen=True)
class PromotionRule:
    alpha: float = 0.025  # the false-promotion rate, at any stopping time
    design_gain: float = 0.08  # the gain over 0.5 the promoting bets are tuned for
    min_gain: float | None = 0.075  # futility: reject once a gain of this size is ruled out
    futility_alpha: float | None = None  # the error of that ruling (default: alpha)
    max_tasks: int | None = 1000  # the horizon: not shown better after this many tasks

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be between 0 and 1")
        if not 0 < self.design_gain < 0.5:
            raise ValueError("design_gain must be between 0 and 0.5")
        if self.min_gain is not None and not 0 < self.min_gain < 0.5:
            raise ValueError("min_gain must be between 0 and 0.5 (or None: no futility rule)")
        if self.futility_alpha is not None and not 0 < self.futility_alpha < 1:
            raise ValueError("futility_alpha must be between 0 and 1")
        if self.max_tasks is not None and self.max_tasks < 1:
            raise ValueError("max_tasks must be at least 1 (or None: no horizon)")

    @property
    def rejection_alpha(self) -> float:
        return self.alpha if self.futility_alpha is None else self.futility_alpha


@dataclass(frozen=True)
class PromotionEvidence:
    verdict: str  # promote | reject | wait
    words: str  # the verdict in one sentence, with its evidence
    tasks: int  # task scores counted (at most max_tasks)
    decided_at: int | None  # the task after which the verdict was reached (None while waiting)
    win_rate: float | None  # the mean task score
    e_value: float  # the promoting capital (evidence against "no better"); promote at 1/alpha
    futility_e_value: float | None  # the rejecting capital (evidence against "better by min_gain")
    threshold: float  # 1/alpha
    low: float  # the confidence sequence for the win rate (valid at every look), at the decision or now
    high: float
    alpha: float
    min_gain: float | None
    max_tasks: int | None

    def as_dict(self) -> dict:
        return asdict(self)


def _predictable_variance(x: np.ndarray) -> np.ndarray:
    """v_{t-1} for every t: the variance of the scores before t (shrunk towards PRIOR_VARIANCE), never using x_t."""
    runs, n = x.shape
    before = np.arange(n, dtype=float)  # tasks before t
    s1 = np.concatenate([np.zeros((runs, 1)), np.cumsum(x, 1)[:, :-1]], 1)
    s2 = np.concatenate([np.zeros((runs, 1)), np.cumsum(x * x, 1)[:, :-1]], 1)
    mean = (s1 + NULL_RATE * PRIOR_TASKS) / (before + PRIOR_TASKS)
    squares = np.maximum(s2 - 2 * mean * s1 + before * mean**2, 0.0)
    return (squares + PRIOR_VARIANCE * PRIOR_TASKS) / (before + PRIOR_TASKS)


def log_capital(x: np.ndarray, null: float, *, side: str, gain: float, variance: np.ndarray | None = None) -> np.ndarray:
    """log K_t for each row of `x` (runs × tasks): side "above" bets that the mean is above `null` (tests mean <=
    null), side "below" that it is below (tests mean >= null); bets tuned for a difference of `gain`."""
    variance = _predictable_variance(x) if variance is None else variance
    payoff = x - null if side == "above" else null - x
    worst = null if side == "above" else 1.0 - null  # the largest possible loss per unit bet
    bet = np.minimum(gain / (variance + gain * gain), BET_CAP / worst)
    return np.cumsum(np.log1p(bet * payoff), axis=1)


def _as_matrix(scores) -> np.ndarray:
    x = np.asarray(scores, dtype=float)
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.ndim != 2 or not np.all(np.isfinite(x)) or np.any((x < 0) | (x > 1)):
        raise ValueError("scores must be finite numbers in [0, 1]")
    return x


def verdict_paths(scores, **rule) -> tuple[np.ndarray, np.ndarray]:
    """For each run (row of `scores`, runs × tasks): (verdict codes +1 promote / −1 reject / 0 wait, the task count
    at which it was reached, 0 while waiting), exactly as `sequential_verdict` on that row would say."""
    r = PromotionRule(**rule)
    x = _as_matrix(scores)
    if r.max_tasks is not None:
        x = x[:, : r.max_tasks]
    runs, n = x.shape
    if n == 0:
        return np.zeros(runs, dtype=int), np.zeros(runs, dtype=int)
    never = n + 1
    variance = _predictable_variance(x)
    up = log_capital(x, NULL_RATE, side="above", gain=r.design_gain, variance=variance) >= math.log(1 / r.alpha)
    first_up = np.where(up.any(1), up.argmax(1) + 1, never)
    first_down = np.full(runs, never)
    if r.min_gain is not None:
        down = log_capital(x, NULL_RATE + r.min_gain, side="below", gain=r.min_gain,
                           variance=variance) >= math.log(1 / r.rejection_alpha)
        first_down = np.where(down.any(1), down.argmax(1) + 1, never)
    code = np.where(first_up <= first_down, 1, -1) * (np.minimum(first_up, first_down) < never)
    at = np.where(code != 0, np.minimum(first_up, first_down), 0)
    horizon = (code == 0) & (r.max_tasks is not None) & (n >= (r.max_tasks or 0))
    code, at = np.where(horizon, -1, code), np.where(horizon, n, at)
    return code, at


def sequential_verdict(scores: Sequence[float], **rule) -> str:
    """"promote" | "reject" | "wait" from the task-level scores so far, in the order the tasks closed; valid when
    called after every task (see the module's docstring). Keyword arguments: those of PromotionRule."""
    codes, _ = verdict_paths(_one_sequence(scores), **rule)
    return {1: PROMOTE, -1: REJECT, 0: WAIT}[int(codes[0])]


def _one_sequence(scores) -> np.ndarray:
    x = np.asarray(scores, dtype=float)
    if x.ndim != 1:
        raise ValueError("scores must be one sequence")
    return x.reshape(1, -1)


def _confidence_sequence(x: np.ndarray, r: PromotionRule) -> tuple[float, float]:
    """The win rates not rejected by either side at any time so far: (lowest, highest) on CS_GRID."""
    if x.shape[1] == 0:
        return 0.0, 1.0
    grid = np.repeat(x, len(CS_GRID), axis=0)
    variance = _predictable_variance(grid)
    nulls = CS_GRID[:, None]
    below = log_capital(grid, nulls, side="above", gain=r.design_gain, variance=variance).max(1) >= math.log(1 / r.alpha)
    down_gain = r.min_gain if r.min_gain is not None else r.design_gain
    above = log_capital(grid, nulls, side="below", gain=down_gain,
                        variance=variance).max(1) >= math.log(1 / r.rejection_alpha)
    kept = CS_GRID[~below & ~above]
    if kept.size == 0:  # the two sides crossed (a rare, extreme sequence): the grid point where they meet
        meet = float(CS_GRID[np.argmax(~below)]) if (~below).any() else 1.0
        return meet, meet
    return (0.0 if kept[0] == CS_GRID[0] else float(kept[0])), (1.0 if kept[-1] == CS_GRID[-1] else float(kept[-1]))


def promotion_evidence(scores: Sequence[float], **rule) -> PromotionEvidence:
    """The verdict with what it rests on (for the registry): e-values, the running mean and the confidence sequence
    at the moment of the decision (or now, while waiting)."""
    r = PromotionRule(**rule)
    x = _as_matrix(_one_sequence(scores))
    if r.max_tasks is not None:
        x = x[:, : r.max_tasks]
    code, at = (int(v[0]) for v in verdict_paths(x, **rule))
    upto = x[:, : at] if code else x
    n = upto.shape[1]
    e_value = float(np.exp(log_capital(upto, NULL_RATE, side="above", gain=r.design_gain)[0, -1])) if n else 1.0
    futility = None
    if r.min_gain is not None:
        futility = float(np.exp(log_capital(upto, NULL_RATE + r.min_gain, side="below", gain=r.min_gain)[0, -1])) if n else 1.0
    low, high = _confidence_sequence(upto, r)
    win_rate = float(upto.mean()) if n else None
    verdict = {1: PROMOTE, -1: REJECT, 0: WAIT}[code]
    return PromotionEvidence(verdict=verdict, words=_words(verdict, n, win_rate, e_value, futility, low, high, r),
                             tasks=n, decided_at=at or None, win_rate=win_rate, e_value=e_value,
                             futility_e_value=futility, threshold=1 / r.alpha, low=low, high=high, alpha=r.alpha,
                             min_gain=r.min_gain, max_tasks=r.max_tasks)


def _words(verdict, n, win_rate, e_value, futility, low, high, r: PromotionRule) -> str:
    level = f"{100 * (1 - r.alpha - r.rejection_alpha):.0f}%"
    if n == 0:
        return "waiting: no head-to-head task has closed yet"
    stand = (f"win rate {win_rate:.3f} over {n} tasks, {level} confidence sequence [{low:.3f}, {high:.3f}], "
             f"e-value {e_value:.3g} (promotes at {1 / r.alpha:.0f})")
    if verdict == PROMOTE:
        return f"promoted: shown better than the active policy — {stand}"
    if verdict == REJECT and futility is not None and futility >= 1 / r.rejection_alpha:
        return f"rejected: a gain of {r.min_gain:g} or more is ruled out — {stand}"
    if verdict == REJECT:
        return f"rejected: not shown better within {r.max_tasks} tasks — {stand}"
    return f"waiting: not yet shown better or worse — {stand}"
