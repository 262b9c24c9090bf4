"""DPO with a weight and a label smoothing per pair (`weighted_trainer_class`, a `trl.DPOTrainer` subclass).

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

An iterative-DPO round's weights and smoothings come from `rounds.weights`.
"""

from __future__ import annotations

import torch

BATCH_COUPLED = ("aot", "aot_unpaired", "sft")
SMOOTHED_BY_TRL = ("robust", "exo_pair")  # TRL's own loss reads label_smoothing


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
