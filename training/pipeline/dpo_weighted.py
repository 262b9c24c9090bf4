"""DPO with a weight per pair: `trl.DPOTrainer` has none, so this subclass scales each pair's loss by its `weight`.

TRL computes the loss of a batch as the mean over pairs of a per-pair loss, inside one long method with no hook
for a weight. `WeightedDPOTrainer.compute_loss` therefore runs TRL's own loss on each pair alone (a batch of one
pair, so the mean is that pair's loss ℓᵢ) and returns Σ wᵢ·ℓᵢ / B: exactly the weighted mean, for every per-pair
loss type (sigmoid, ipo, hinge …; not the batch-coupled `aot`, `sft`). A pair of weight 0 adds no gradient. The
cost is B forward passes of one pair instead of one of B pairs: the same arithmetic, less batching.
"""

from __future__ import annotations

import torch

BATCH_COUPLED = ("aot", "aot_unpaired", "sft")


def _weighted_collator(inner):
    """TRL's preference collator, plus the rows' `weight` as a float tensor."""
    def collate(examples):
        weights = torch.tensor([float(e["weight"]) for e in examples], dtype=torch.float32)
        batch = inner([{k: v for k, v in e.items() if k != "weight"} for e in examples])
        batch["weight"] = weights
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
            if "weight" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "weight"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            weights = inputs.pop("weight")
            size = len(weights)
            total = 0.0
            for index in range(size):
                loss = self._compute_loss(model, _one_pair(inputs, index, size), False)
                total = total + weights[index].to(loss.device, loss.dtype) * loss
            return total / size

    return WeightedDPOTrainer
