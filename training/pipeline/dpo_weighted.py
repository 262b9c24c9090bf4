"""DPO with a weight and a label smoothing per pair, and the weights of an iterative-DPO round's pairs.

`trl.DPOTrainer` has neither per-pair weights nor per-pair smoothing, so this subclass scales each pair's loss by its
`weight` and, for a pair with `smoothing` ε > 0, trains on the conservative-DPO loss (cDPO, Mitchell 2023: the
label is taken as right with probability 1 − ε), or, with loss_type "robust", on TRL's robust DPO loss with ε.

TRL computes the loss of a batch as the mean over pairs of a per-pair loss, inside one long method with no hook
for a weight. `WeightedDPOTrainer.compute_loss` therefore runs TRL's own loss on each pair alone (a batch of one
pair, so the mean is that pair's loss ℓᵢ) and returns Σ wᵢ·ℓᵢ / B: exactly the weighted mean, for every per-pair
loss type (sigmoid, ipo, hinge …; not the batch-coupled `aot`, `sft`). A pair of weight 0 adds no gradient. The
cost is B forward passes of one pair instead of one of B pairs: the same arithmetic, less batching.

cDPO for the sigmoid loss needs the pair's βδ (the implicit-reward margin), which TRL does not return; for one pair
the sigmoid loss is ℓ = −log σ(βδ), so βδ = −log(expm1(ℓ)) exactly, and (1 − ε)·ℓ(βδ) + ε·ℓ(−βδ) = ℓ + ε·βδ.

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

import torch

from .agreement_model import judge_accuracy, label_error

BATCH_COUPLED = ("aot", "aot_unpaired", "sft")
SMOOTHED_BY_TRL = ("robust", "exo_pair")  # TRL's own loss reads label_smoothing
MAX_SMOOTHING = 0.45  # robust DPO divides by 1 − 2ε; a label this unsure is kept, weakly
CONFIDENCE_FLOOR = 0.5  # the weight of a pair whose judges all said "unsure" (confidence 1)
MIN_MODEL_WIN_PROBABILITY = 0.6  # a reward-model pair below this calibrated win probability is noise, not a label
DEFAULT_GAP_SLOPE = 1.0  # σ(gap) when there is no human label to calibrate on (a reward model's native scale)


# --- the weights of an iterative-DPO round's pairs ------------------------------------------------------------------


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


def cdpo_from_sigmoid_loss(loss: torch.Tensor, smoothing: float) -> torch.Tensor:
    """The conservative-DPO loss (1 − ε)·(−log σ(x)) + ε·(−log σ(−x)) of one pair from its sigmoid loss
    ℓ = −log σ(x): x = −log(expm1(ℓ)), so the result is ℓ + ε·x (ℓ is clamped where fp32 would round it to 0)."""
    if smoothing == 0.0:
        return loss
    clamped = loss.clamp(min=1e-30, max=80.0)
    return loss + smoothing * -torch.log(torch.expm1(clamped))


PER_PAIR = ("weight", "smoothing")


def _weighted_collator(inner):
    """TRL's preference collator, plus the rows' `weight` and (when the rows have one) `smoothing` as float
    tensors."""
    def collate(examples):
        batch = inner([{k: v for k, v in e.items() if k not in PER_PAIR} for e in examples])
        batch["weight"] = torch.tensor([float(e["weight"]) for e in examples], dtype=torch.float32)
        if any("smoothing" in e for e in examples):
            batch["smoothing"] = torch.tensor([float(e.get("smoothing") or 0.0) for e in examples],
                                              dtype=torch.float32)
        return batch
    return collate


def _one_pair(inputs: dict, index: int, size: int) -> dict:
    """Pair `index` of a collated batch (rows [chosen₀…chosen_B, rejected₀…rejected_B]), trimmed of padding."""
    rows = [index, size + index]
    pair = {}
    for key, value in inputs.items():
        if key in ("ref_chosen_logps", "ref_rejected_logps"):
            pair[key] = value[index : index + 1]
        else:
            pair[key] = value[rows]
    length = int(pair["attention_mask"].sum(dim=1).max())
    for key in ("input_ids", "attention_mask", "completion_mask"):
        pair[key] = pair[key][:, :length]
    return pair


def weighted_trainer_class():
    import trl

    class WeightedDPOTrainer(trl.DPOTrainer):
        """`trl.DPOTrainer` whose loss is the `weight`-weighted mean of the pairs' losses (see the module)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if set(self.loss_types) & set(BATCH_COUPLED):
                raise ValueError(f"weighted DPO needs a per-pair loss, not {', '.join(self.loss_types)}")
            self.data_collator = _weighted_collator(self.data_collator)

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            missing = [c for c in PER_PAIR if c not in self._signature_columns]
            self._signature_columns = [*self._signature_columns, *missing]

        def _pair_loss(self, model, pair: dict, smoothing: float):
            """TRL's loss of one pair, label-smoothed by `smoothing` (see the module)."""
            if smoothing == 0.0:
                return self._compute_loss(model, pair, False)
            if set(self.loss_types) <= set(SMOOTHED_BY_TRL):
                kept, self.label_smoothing = self.label_smoothing, smoothing
                try:
                    return self._compute_loss(model, pair, False)
                finally:
                    self.label_smoothing = kept
            plain_sigmoid = (list(self.loss_types) == ["sigmoid"] and list(self.loss_weights) == [1.0]
                             and not self.use_weighting and not self.aux_loss_enabled)
            if plain_sigmoid:  # the loss is −log σ(βδ) alone, which cdpo_from_sigmoid_loss inverts
                return cdpo_from_sigmoid_loss(self._compute_loss(model, pair, False), smoothing)
            raise ValueError(f"per-pair label smoothing needs loss_type sigmoid or robust, not "
                             f"{', '.join(self.loss_types)}")

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            weights = inputs.pop("weight")
            smoothing = inputs.pop("smoothing", None)
            size = len(weights)
            total = 0.0
            for index in range(size):
                eps = 0.0 if smoothing is None else float(smoothing[index])
                loss = self._pair_loss(model, _one_pair(inputs, index, size), eps)
                total = total + weights[index].to(loss.device, loss.dtype) * loss
            return total / size

    return WeightedDPOTrainer
