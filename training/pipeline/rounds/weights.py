"""The weights and label smoothing of an iterative-DPO round's pairs, for `dpo.weighted`'s trainer.

The weights of a round (`round_pair_weights`):
- a pair from people weighs `human_weight` × a confidence factor in [½, 1] ((1 + (c − 1) / 4) / 2 for the judges'
  mean self-rated confidence c; no confidence value zeroes a label — a judge who says "unsure" is still right far
  more often than a coin), and its smoothing is the posterior probability that the consensus label is wrong
  (`agreement_model.label_error`, from the judges' agreement and how the pair's votes split);
- a reward-model pair (best vs worst answer of a prompt) weighs `model_pair_weight` × (2p − 1) and is smoothed by
  1 − p, where p = σ(a · gap) is the reward model's win probability calibrated on the round's human labels
  (`calibrate_gap_slope`); pairs with p below `MIN_MODEL_WIN_PROBABILITY` are not used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..agreement_model import judge_accuracy, label_error

MAX_SMOOTHING = 0.45  # robust DPO divides by 1 − 2ε; a label this unsure is kept, weakly
CONFIDENCE_FLOOR = 0.5  # the weight of a pair whose judges all said "unsure" (confidence 1)
MIN_MODEL_WIN_PROBABILITY = 0.6  # a reward-model pair below this calibrated win probability is noise, not a label
DEFAULT_GAP_SLOPE = 1.0  # σ(gap) when there is no human label to calibrate on (a reward model's native scale)


def confidence_factor(confidence: float | None) -> float:
    """The judges' mean confidence (1 = unsure … 5 = certain) as a weight in [CONFIDENCE_FLOOR, 1]; unknown = 1."""
    if confidence is None:
        return 1.0
    share = min(max((float(confidence) - 1.0) / 4.0, 0.0), 1.0)
    return CONFIDENCE_FLOOR + (1.0 - CONFIDENCE_FLOOR) * share


def human_label_error(row: dict[str, Any], judge_q: float | None) -> float:
    """P(the row's consensus label is wrong): `label_error` with the row's judge count and margin; 0 when the judges'
    accuracy is unknown (no pair judged twice anywhere)."""
    if judge_q is None:
        return 0.0
    return min(label_error(judge_q, max(int(row.get("n_judgements") or 1), 1), float(row.get("margin") or 0.0)),
               MAX_SMOOTHING)


def calibrate_gap_slope(signed_gaps: Sequence[float], label_errors: Sequence[float] = (), *,
                        prior_slope: float = DEFAULT_GAP_SLOPE, prior_strength: float = 2.0) -> float:
    """Platt scaling through the origin: the a ≥ 0 maximising Σ (1 − εᵢ)·log σ(a·gᵢ) + εᵢ·log σ(−a·gᵢ), gᵢ the reward
    model's r(chosen) − r(rejected) on a pair people labelled and εᵢ that label's error, plus a Gaussian prior
    (`prior_strength` pseudo-pairs' worth) towards `prior_slope`, so a handful of labels cannot make it 0 or ∞."""
    errors = list(label_errors) or [0.0] * len(signed_gaps)
    slope = prior_slope
    for _ in range(100):  # Newton on a concave objective
        gradient = -prior_strength * (slope - prior_slope)
        curvature = -prior_strength
        for gap, error in zip(signed_gaps, errors):
            p = 1.0 / (1.0 + math.exp(-slope * gap))
            gradient += gap * ((1.0 - error) - p)
            curvature -= gap * gap * p * (1.0 - p)
        step = -gradient / curvature
        slope = max(slope + step, 0.0)
        if abs(step) < 1e-10:
            break
    return slope


def model_win_probability(gap: float, slope: float) -> float:
    return 1.0 / (1.0 + math.exp(-slope * abs(gap)))


def round_pair_weights(people: Sequence[dict[str, Any]], machine: Sequence[dict[str, Any]], *,
                       judge_agreement: float | None, human_weight: float = 1.0, model_pair_weight: float = 1.0,
                       signed_gaps: Sequence[float] = (), ) -> tuple[list[dict], list[dict], dict[str, float | None]]:
    """(people's rows, the reward model's rows kept, the figures) with `weight`, `smoothing` and `source` set.

    `judge_agreement`: the judges' mean leave-one-out agreement (ties included) that fixes their accuracy q;
    `signed_gaps`: the reward model's r(chosen) − r(rejected) on each of `people`'s rows, where known (None
    elsewhere), to calibrate its gaps. Figures: judge_q, gap_slope, and people_weight_share, the share of the total
    loss weight that comes from people."""
    judge_q = judge_accuracy(judge_agreement, [int(r.get("n_judgements") or 1) for r in people] or [2])
    people_rows = [{**row, "source": "people", "weight": human_weight * confidence_factor(row.get("confidence")),
                    "smoothing": human_label_error(row, judge_q)} for row in people]
    known = [(g, row["smoothing"]) for g, row in zip(signed_gaps, people_rows) if g is not None]
    slope = calibrate_gap_slope([g for g, _ in known], [e for _, e in known])
    machine_rows = []
    for row in machine:
        p = model_win_probability(float(row.get("gap") or 0.0), slope)
        if p < MIN_MODEL_WIN_PROBABILITY:
            continue
        machine_rows.append({**row, "source": "reward_model", "weight": model_pair_weight * (2.0 * p - 1.0),
                             "smoothing": min(1.0 - p, MAX_SMOOTHING), "win_probability": p})
    figures = {"judge_q": judge_q, "gap_slope": slope,
               "people_weight_share": people_weight_share(people_rows + machine_rows)}
    return people_rows, machine_rows, figures


def people_weight_share(rows: Sequence[dict[str, Any]]) -> float | None:
    """Σ weight of people's rows / Σ weight of all rows (None when nothing weighs anything)."""
    total = sum(float(r["weight"]) for r in rows)
    return sum(float(r["weight"]) for r in rows if r.get("source") == "people") / total if total > 0 else None
