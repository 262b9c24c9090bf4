"""Held-out evaluation of preference models: accuracy with its 95% interval, calibration, length bias.

The registry's acceptance rule reads `eval/accuracy_low`: a model is worth activating only when the
lower end of the Wilson interval of its held-out pairwise accuracy lies above chance (0.5). The same
`pairwise_accuracy` serves reward models (r_chosen - r_rejected) and DPO policies (the implicit reward).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .data import InputFormat, messages_to_text
from .reward_scoring import score_token_ids, tokenize_pair

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | tuple[None, None]:
    """Wilson score interval of a binomial proportion (sound at small n and near 0 or 1); (None, None) if n = 0."""
    if n == 0:
        return None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def pairwise_accuracy(margins: Sequence[float], prefix: str = "eval/") -> dict[str, float | None]:
    """accuracy (share of pairs with margin > 0; a tie is not a win), its 95% Wilson interval and n_pairs."""
    n = len(margins)
    wins = sum(m > 0 for m in margins)
    low, high = wilson_interval(wins, n)
    return {
        f"{prefix}accuracy": wins / n if n else None,
        f"{prefix}accuracy_low": low,
        f"{prefix}accuracy_high": high,
        f"{prefix}n_pairs": float(n),
    }


def expected_calibration_error(p_chosen: Sequence[float], n_bins: int = 10) -> float:
    """Top-label ECE of P(chosen preferred) = sigmoid(r_chosen - r_rejected) against the human labels.

    The predicted side is the one with p >= 0.5, its confidence max(p, 1 - p) in [0.5, 1]; bins are equal-width
    on [0.5, 1]. ECE = sum over bins of (bin share) * |accuracy in bin - mean confidence in bin|.
    """
    if not p_chosen:
        return float("nan")
    confidence = [max(p, 1.0 - p) for p in p_chosen]
    correct = [1.0 if p > 0.5 else 0.0 for p in p_chosen]
    bins: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(confidence):
        bins[min(int((c - 0.5) / 0.5 * n_bins), n_bins - 1)].append(i)
    ece = 0.0
    for members in bins:
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            mean_confidence = sum(confidence[i] for i in members) / len(members)
            ece += len(members) / len(p_chosen) * abs(accuracy - mean_confidence)
    return ece


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson correlation; None when either side is constant (undefined)."""
    n = len(xs)
    if n < 2:
        return None
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    var_x = sum((x - mean_x) ** 2 for x in xs)
    var_y = sum((y - mean_y) ** 2 for y in ys)
    if var_x == 0 or var_y == 0:
        return None
    return cov / math.sqrt(var_x * var_y)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def preference_metrics(
    rewards_chosen: Sequence[float],
    rewards_rejected: Sequence[float],
    *,
    agreement: Sequence[float | None] = (),
    chosen_lengths: Sequence[int] = (),
    rejected_lengths: Sequence[int] = (),
    calibration_bins: int = 10,
    prefix: str = "eval/",
) -> dict[str, float | None]:
    """Held-out metrics of a reward model, flat.

    accuracy, accuracy_low/high (95% Wilson interval), n_pairs: see `pairwise_accuracy`. agreement_ceiling: mean
    annotator agreement of the pairs that have one (a model cannot beat the humans' own consistency);
    accuracy_vs_ceiling = accuracy / ceiling. ece: calibration of sigmoid(r_chosen - r_rejected).
    reward_length_corr: Pearson r of reward vs completion length in characters over all completions (high = the
    model may pay for length: reward-hacking risk).
    """
    n = len(rewards_chosen)
    margins = [c - r for c, r in zip(rewards_chosen, rewards_rejected)]
    accuracy = pairwise_accuracy(margins, prefix="")
    known_agreement = [a for a in agreement if a is not None]
    ceiling = sum(known_agreement) / len(known_agreement) if known_agreement else None
    all_rewards = list(rewards_chosen) + list(rewards_rejected)
    mean_reward = sum(all_rewards) / len(all_rewards) if all_rewards else None
    lengths = [float(x) for x in list(chosen_lengths) + list(rejected_lengths)]
    metrics: dict[str, float | None] = {
        **accuracy,
        "agreement_ceiling": ceiling,
        "accuracy_vs_ceiling": accuracy["accuracy"] / ceiling if accuracy["accuracy"] is not None and ceiling else None,
        "ece": expected_calibration_error([_sigmoid(m) for m in margins], calibration_bins) if n else None,
        "margin": sum(margins) / n if n else None,
        "reward_mean": mean_reward,
        "reward_std": (
            math.sqrt(sum((r - mean_reward) ** 2 for r in all_rewards) / len(all_rewards)) if all_rewards else None
        ),
        "reward_length_corr": pearson(all_rewards, lengths) if chosen_lengths else None,
    }
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def evaluate_reward_model(
    model,
    tokenizer,
    rows: Sequence[dict[str, Any]],
    fmt: InputFormat,
    *,
    max_length: int,
    batch_size: int = 16,
    calibration_bins: int = 10,
) -> dict[str, float | None]:
    """Score held-out rows with an in-memory reward model. Pairs past `max_length` are dropped and counted, as
    TRL does in training (so train and eval see the same population)."""
    kept, sequences = [], []
    for row in rows:
        chosen_ids = tokenize_pair(tokenizer, row["prompt"], row["chosen"], fmt)
        rejected_ids = tokenize_pair(tokenizer, row["prompt"], row["rejected"], fmt)
        if len(chosen_ids) <= max_length and len(rejected_ids) <= max_length:
            kept.append(row)
            sequences += [chosen_ids, rejected_ids]
    rewards = score_token_ids(model, sequences, model.config.pad_token_id, batch_size)
    metrics = preference_metrics(
        rewards[0::2],
        rewards[1::2],
        agreement=[row.get("agreement") for row in kept],
        chosen_lengths=[len(messages_to_text(row["chosen"])) for row in kept],
        rejected_lengths=[len(messages_to_text(row["rejected"])) for row in kept],
        calibration_bins=calibration_bins,
    )
    metrics["eval/dropped_pairs"] = float(len(rows) - len(kept))
    return metrics
