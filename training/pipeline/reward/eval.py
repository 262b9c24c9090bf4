"""Held-out evaluation of preference models: accuracy with its interval, calibration, length bias.

A task's K(K−1)/2 pairs share their answers and their judges, so they are not independent: every interval here
resamples TASKS, not pairs (`clustered_accuracy`: a Wilson interval on the design-effect-corrected number of
pairs with Student's t quantile on the number of tasks; `clustered_difference`: a cluster-robust paired t bound).
The registry's acceptance rule (`acceptance_verdict`) reads `eval/accuracy_low` (above chance), `eval/vs_length_low`
(beats "the longer answer wins" on the same pairs) and, when the project has one, the paired difference to the
previous active reward model on the same pairs. The same `pairwise_accuracy` serves reward models
(r_chosen − r_rejected) and DPO policies (the implicit reward).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..agreement_model import agreement_ceiling
from ..data import InputFormat, messages_to_text
from .scoring import score_token_ids, tokenize_pair

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


ALPHA = 0.025  # one-sided: the rate at which a chance-level model may be accepted


def _t_quantile(p: float, df: float) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


def _normal_quantile(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(p))


def _cluster_totals(values: Sequence[float], clusters: Sequence | None) -> tuple[list[float], list[int]]:
    """Per cluster (in first-seen order): the sum of the values and their count. clusters None: one pair each."""
    if clusters is None:
        return [float(v) for v in values], [1] * len(values)
    index: dict = {}
    sums: list[float] = []
    counts: list[int] = []
    for value, cluster in zip(values, clusters, strict=True):
        at = index.setdefault(cluster, len(sums))
        if at == len(sums):
            sums.append(0.0)
            counts.append(0)
        sums[at] += float(value)
        counts[at] += 1
    return sums, counts


def clustered_accuracy(correct: Sequence[float], clusters: Sequence | None, *, alpha: float = ALPHA
                       ) -> tuple[float | None, float | None, float | None, int]:
    """(accuracy, lower, upper, n_clusters) of per-pair scores in [0, 1] (1 right, 0 wrong, 0.5 a coin flip),
    the pairs of one cluster (a task, or a prompt) counted as correlated.

    The bounds are one-sided (1 − alpha) Wilson bounds on n_eff = n / design effect pairs, the design effect
    from the cluster-robust variance of the ratio estimator (at least 1; when every pair agrees, n / clusters:
    one observation per cluster), with Student's t quantile on clusters − 1 degrees of freedom in place of z.
    Fewer than 2 clusters: (accuracy, None, None, clusters). `clusters=None` declares the pairs independent: the
    plain Wilson interval (z, no design effect)."""
    sums, counts = _cluster_totals(correct, clusters)
    n, g = sum(counts), len(counts)
    if n == 0:
        return None, None, None, 0
    p = sum(sums) / n
    if clusters is None:
        n_eff, z = float(n), _normal_quantile(1 - alpha)
    elif g < 2:
        return p, None, None, g
    else:
        robust = g / (g - 1) * sum((y - p * m) ** 2 for y, m in zip(sums, counts)) / (n * n)
        binomial = p * (1 - p) / n
        design_effect = max(1.0, robust / binomial) if binomial > 0 else n / g
        n_eff = n / design_effect
        z = _t_quantile(1 - alpha, g - 1)
    denominator = 1 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denominator
    half = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / denominator
    return p, max(0.0, centre - half), min(1.0, centre + half), g


def clustered_difference(a: Sequence[float], b: Sequence[float], clusters: Sequence | None, *,
                         alpha: float = ALPHA) -> tuple[float | None, float | None, int]:
    """(mean of a − b, its one-sided (1 − alpha) lower bound, n_clusters): two scorers' per-pair scores on the SAME
    pairs (paired), the cluster-robust variance of the mean with Student's t. Two scorers agree on most pairs, so
    the t quantile's degrees of freedom are the clusters where they differ, less one (on all clusters, four pairs
    that differ, all one way, would clear the bound: 1 in 16 by chance). No cluster differs: the bound is 0 (no
    evidence either way); fewer than 2 clusters, or fewer than 2 that differ while the mean is positive: None."""
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    sums, counts = _cluster_totals(diffs, clusters)
    n, g = sum(counts), len(counts)
    if n == 0:
        return None, None, 0
    mean = sum(sums) / n
    if g < 2:
        return mean, None, g
    differing = sum(1 for y in sums if y != 0) if clusters is not None else sum(1 for d in diffs if d != 0)
    if differing == 0:
        return mean, 0.0, g
    if differing < 2:
        return mean, (None if mean > 0 else mean), g
    se = math.sqrt(g / (g - 1) * sum((y - mean * m) ** 2 for y, m in zip(sums, counts))) / n
    return mean, mean - _t_quantile(1 - alpha, differing - 1) * se, g


def pair_scores(margins: Sequence[float]) -> list[float]:
    """1 for a pair ranked right (margin > 0), 0 otherwise: a tie is not a win."""
    return [1.0 if m > 0 else 0.0 for m in margins]


def length_scores(chosen_lengths: Sequence[float], rejected_lengths: Sequence[float]) -> list[float]:
    """The length-only baseline, "the longer answer wins": 1 right, 0 wrong, 0.5 for equal lengths (a coin flip)."""
    return [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen_lengths, rejected_lengths, strict=True)]


def pairwise_accuracy(margins: Sequence[float], prefix: str = "eval/", clusters: Sequence | None = None,
                      *, alpha: float = ALPHA) -> dict[str, float | None]:
    """accuracy (share of pairs with margin > 0; a tie is not a win), its bounds clustered by `clusters` (one
    task/prompt id per pair; None: every pair its own cluster, as if independent), n_pairs and n_tasks."""
    accuracy, low, high, g = clustered_accuracy(pair_scores(margins), clusters, alpha=alpha)
    return {
        f"{prefix}accuracy": accuracy,
        f"{prefix}accuracy_low": low,
        f"{prefix}accuracy_high": high,
        f"{prefix}n_pairs": float(len(margins)),
        f"{prefix}n_tasks": float(g),
    }


def acceptance_verdict(metrics: dict[str, Any]) -> tuple[bool, str]:
    """Whether a reward model is accepted, from its held-out metrics: (accepted, why not in words).

    Accepted only when each one-sided 97.5% task-clustered lower bound clears, on the same held-out pairs:
    `eval/accuracy_low` > 0.5 (above chance), `eval/vs_length_low` > 0 (beats "the longer answer wins", the
    paired difference) and, when the project had an active reward model (`eval/vs_previous` present),
    `eval/vs_previous_low` > 0 (beats it, paired). Each is a test at 2.5% and all must pass (an intersection–union
    test), so a model that fails any one claim is accepted at most 2.5% of the time."""
    n_pairs = int(metrics.get("eval/n_pairs") or 0)
    if n_pairs == 0:
        return False, ("no held-out preference pairs to judge the reward model on (the snapshot's test split is "
                       "empty): collect judgements on more prompts")
    accuracy, low = metrics.get("eval/accuracy"), metrics.get("eval/accuracy_low")
    high = metrics.get("eval/accuracy_high")
    n_tasks = int(metrics.get("eval/n_tasks") or 0)
    if low is None:
        return False, f"its {n_pairs} held-out pairs come from {n_tasks} task(s), too few to bound its accuracy"
    if not low > 0.5:
        return False, (f"held-out accuracy {accuracy:.2f} (interval {low:.2f}–{high:.2f} over {n_tasks} tasks, "
                       f"{n_pairs} pairs) is not above chance with confidence")
    vs_length_low = metrics.get("eval/vs_length_low")
    if vs_length_low is None or not vs_length_low > 0:
        baseline = metrics.get("eval/length_baseline_accuracy")
        return False, (f"held-out accuracy {accuracy:.2f} does not beat the length-only baseline (the longer answer "
                       f"wins: {'–' if baseline is None else f'{baseline:.2f}'}) with confidence")
    if "eval/vs_previous" in metrics:
        vs_previous_low = metrics.get("eval/vs_previous_low")
        if vs_previous_low is None or not vs_previous_low > 0:
            previous = metrics.get("eval/previous_accuracy")
            return False, (f"held-out accuracy {accuracy:.2f} does not beat the active reward model's "
                           f"{'–' if previous is None else f'{previous:.2f}'} on the same pairs with confidence")
    return True, ""


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
    clusters: Sequence | None = None,
    n_judgements: Sequence[int] = (),
    label_margins: Sequence[float] = (),
    judge_agreement: float | None = None,
) -> dict[str, float | None]:
    """Held-out metrics of a reward model, flat.

    accuracy, accuracy_low/high (one-sided 97.5% bounds clustered by `clusters`, one task or prompt id per pair),
    n_pairs, n_tasks: see `pairwise_accuracy`. With lengths: length_baseline_accuracy ("the longer answer wins")
    and vs_length / vs_length_low, the paired, clustered difference to it. agreement_ceiling: mean
    leave-one-out agreement of the pairs that have one (how well one judge predicts the other judges: the human
    baseline); accuracy_vs_ceiling = accuracy / that. With the pairs' `n_judgements` and `label_margins` (the
    export's `margin`): label_ceiling, the accuracy a model that knows the true preference can expect against
    these consensus labels (`agreement_model.agreement_ceiling`; `judge_agreement`, the snapshot's agreement with
    ties included, fits the judges better than the tie-free pairs can), and accuracy_vs_label_ceiling. ece: calibration of sigmoid(r_chosen - r_rejected).
    reward_length_corr: Pearson r of reward vs completion length in characters over all completions (high = the
    model may pay for length: reward-hacking risk).
    """
    n = len(rewards_chosen)
    margins = [c - r for c, r in zip(rewards_chosen, rewards_rejected)]
    accuracy = pairwise_accuracy(margins, prefix="", clusters=clusters)
    versus_length: dict[str, float | None] = {}
    if chosen_lengths and margins:
        baseline = length_scores(chosen_lengths, rejected_lengths)
        vs_length, vs_length_low, _ = clustered_difference(pair_scores(margins), baseline, clusters)
        versus_length = {"length_baseline_accuracy": sum(baseline) / len(baseline), "vs_length": vs_length,
                         "vs_length_low": vs_length_low}
    known_agreement = [a for a in agreement if a is not None]
    ceiling = sum(known_agreement) / len(known_agreement) if known_agreement else None
    label_ceiling = (agreement_ceiling(agreement, n_judgements, label_margins, judge_agreement=judge_agreement)
                     if n_judgements and label_margins else None)
    all_rewards = list(rewards_chosen) + list(rewards_rejected)
    mean_reward = sum(all_rewards) / len(all_rewards) if all_rewards else None
    lengths = [float(x) for x in list(chosen_lengths) + list(rejected_lengths)]
    metrics: dict[str, float | None] = {
        **accuracy,
        **versus_length,
        "agreement_ceiling": ceiling,
        "accuracy_vs_ceiling": accuracy["accuracy"] / ceiling if accuracy["accuracy"] is not None and ceiling else None,
        "label_ceiling": label_ceiling,
        "accuracy_vs_label_ceiling": (accuracy["accuracy"] / label_ceiling
                                      if accuracy["accuracy"] is not None and label_ceiling else None),
        "ece": expected_calibration_error([_sigmoid(m) for m in margins], calibration_bins) if n else None,
        "margin": sum(margins) / n if n else None,
        "reward_mean": mean_reward,
        "reward_std": (
            math.sqrt(sum((r - mean_reward) ** 2 for r in all_rewards) / len(all_rewards)) if all_rewards else None
        ),
        "reward_length_corr": pearson(all_rewards, lengths) if chosen_lengths else None,
    }
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def task_clusters(rows: Sequence[dict[str, Any]]) -> list:
    """The cluster of each held-out pair: its prompt (every pair of a task shares it; a prompt's several tasks
    fall in one cluster, which errs on the wide side). Rows without a prompt_id: one cluster per prompt text."""
    return [row.get("prompt_id") or messages_to_text(row["prompt"]) for row in rows]


def rows_scored_by(score, rows: Sequence[dict[str, Any]]) -> list[float]:
    """Per-pair scores (1 right, 0 wrong or tied) of a scorer `score(prompts, completions) -> rewards` on rows."""
    prompts = [row["prompt"] for row in rows]
    chosen = score(prompts, [row["chosen"] for row in rows])
    rejected = score(prompts, [row["rejected"] for row in rows])
    return pair_scores([c - r for c, r in zip(chosen, rejected)])


def with_judge_agreement(metrics: dict, rows: Sequence[dict[str, Any]], judge_agreement: float | None, *,
                         prefix: str = "eval/") -> dict[str, float | None]:
    """`label_ceiling` and `accuracy_vs_label_ceiling` again, with the judges' accuracy fitted from the snapshot's
    agreement (every pair judged twice, ties included) instead of the held-out rows' own: those rows are the pairs
    the judges did not tie on, so at overlap 2 with equal trust their agreement is 1 whatever the judges do."""
    if judge_agreement is None or not rows:
        return {}
    ceiling = agreement_ceiling([row.get("agreement") for row in rows],
                                [int(row.get("n_judgements") or 1) for row in rows],
                                [float(row.get("margin") or 0.0) for row in rows], judge_agreement=judge_agreement)
    accuracy = metrics.get(f"{prefix}accuracy")
    return {f"{prefix}label_ceiling": ceiling,
            f"{prefix}accuracy_vs_label_ceiling": accuracy / ceiling if accuracy is not None and ceiling else None}


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
        n_judgements=[int(row.get("n_judgements") or 1) for row in kept],
        label_margins=[float(row.get("margin") or 0.0) for row in kept],
        chosen_lengths=[len(messages_to_text(row["chosen"])) for row in kept],
        rejected_lengths=[len(messages_to_text(row["rejected"])) for row in kept],
        calibration_bins=calibration_bins,
        clusters=task_clusters(kept),
    )
    metrics["eval/dropped_pairs"] = float(len(rows) - len(kept))
    return metrics
