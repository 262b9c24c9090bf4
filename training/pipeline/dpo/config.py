"""Settings of `dpo.trainer.train_dpo` (TRL style: a default, a `help` and, for a number, a `range` per field; see
`pipeline.fields`)."""

from __future__ import annotations

import dataclasses

from ..fields import (
    ACCELERATE_CONFIG_HELP, ACCUMULATION, BATCH, DROPOUT, EPOCHS, LEARNING_RATE, LOGGING_STEPS, LORA_ALPHA, LORA_R,
    MAX_PROMPT_TOKENS, OPTIONAL_STEPS, POSITIVE, PROCESSES, PROCESSES_HELP, SEED, Range, check_launch, check_ranges,
    field, require,
)


@dataclasses.dataclass
class DPOConfig:
    """Settings of `trainer.train_dpo` (Direct Preference Optimisation through `trl.DPOTrainer`).

    Changed defaults: bf16 and gradient checkpointing are always off (fp32 on the CPU), LoRA on, so the
    reference is the base model with adapters disabled.
    """

    policy: str = field("smollm2-135m-instruct", "Registered policy directory (or a name under $MODEL_DIR).")
    verify_policy: bool = field(True, "Check the policy against its manifest before loading.")
    use_lora: bool = field(True, "Train LoRA adapters (merged before saving).")
    lora_r: int = field(16, "LoRA rank.", range=LORA_R)
    lora_alpha: int = field(32, "LoRA scaling numerator.", range=LORA_ALPHA)
    lora_dropout: float = field(0.05, "Dropout on the LoRA branch.", range=DROPOUT)
    beta: float = field(0.1, "DPO β: strength of the implicit KL constraint to the reference.", range=POSITIVE)
    loss_type: str = field("sigmoid", "TRL loss type: sigmoid (DPO), ipo, hinge, …")
    learning_rate: float = field(5e-5, "AdamW learning rate.", range=LEARNING_RATE)
    num_train_epochs: float = field(1.0, "Passes over the training pairs.", range=EPOCHS)
    max_steps: int = field(-1, "If > 0: stop after this many optimiser steps.", range=OPTIONAL_STEPS)
    batch_size: int = field(4, "Pairs per step.", range=BATCH)
    gradient_accumulation_steps: int = field(1, "Batches accumulated per step.", range=ACCUMULATION)
    max_length: int = field(512, "Longest prompt + completion in tokens.", range=Range(16, MAX_PROMPT_TOKENS))
    logging_steps: int = field(1, "Report metrics every this many steps.", range=LOGGING_STEPS)
    seed: int = field(0, "Seed.", range=SEED)
    processes: int = field(1, PROCESSES_HELP, range=PROCESSES)
    accelerate_config: str | None = field(None, ACCELERATE_CONFIG_HELP)

    def __post_init__(self):
        check_ranges(self)
        check_launch(self)
        require(self, isinstance(self.policy, str) and self.policy.strip() != "", "policy", "must be a path or name")
        require(self, self.num_train_epochs > 0 or self.max_steps > 0, "num_train_epochs",
                "must be > 0 unless max_steps > 0")
        require(self, self.max_steps == -1 or self.max_steps > 0, "max_steps", "must be -1 (off) or > 0")
