"""Settings of `reward.trainer.train_reward_model` (TRL style: a default, a `help` and, for a number, a `range` per
field; see `pipeline.fields`)."""

from __future__ import annotations

import dataclasses
import warnings

from ..fields import (
    ACCELERATE_CONFIG_HELP, ACCUMULATION, BATCH, COEFFICIENT, DROPOUT, EPOCHS, GRAD_NORM, LEARNING_RATE,
    LOGGING_STEPS, LORA_ALPHA, LORA_R, MAX_PROMPT_TOKENS, MAX_STEPS, OPTIONAL_STEPS, PROCESSES, PROCESSES_HELP, SEED,
    SHARE, Range, check_launch, check_ranges, field, require,
)


@dataclasses.dataclass
class RewardConfig:
    """Settings of `trainer.train_reward_model` (a Bradley-Terry reward model through `trl.RewardTrainer`).

    Groups: the model (`backbone`, LoRA), the optimisation (learning rate, epochs/steps, batches), the data
    (`max_length`, margins, held-out split) and the evaluation. Defaults that differ from TRL's: bf16 and
    gradient checkpointing are always off (fp32 on CPU; bf16 is ~300x slower here), `center_rewards_coefficient`
    is 0.01 (TRL: None) so rewards stay near zero for PPO, `logging_steps` is 5 (TRL: 10).
    """

    # Model
    backbone: str = dataclasses.field(
        default="all-minilm-l6-v2",
        metadata={
            "help": "Local Hugging Face model directory to start from (an encoder such as MiniLM, a causal LM such "
            "as SmolLM2, or an earlier reward model). A bare name is looked up under $MODEL_DIR."
        },
    )
    verify_backbone: bool = dataclasses.field(
        default=True,
        metadata={"help": "Check the backbone against its manifest.json before loading (registry directories)."},
    )
    use_lora: bool = dataclasses.field(
        default=False,
        metadata={"help": "Train LoRA adapters (+ the whole reward head) instead of every weight; merged on save."},
    )
    lora_r: int = field(16, "LoRA rank.", range=LORA_R)
    lora_alpha: int = field(32, "LoRA scaling numerator (scale = alpha / r).", range=LORA_ALPHA)
    lora_dropout: float = field(0.05, "Dropout on the LoRA branch.", range=DROPOUT)
    disable_dropout: bool = field(True, "Turn the backbone's dropout off (TRL's default for reward models).")

    # Optimisation
    learning_rate: float = field(1e-4, "Peak AdamW learning rate (LoRA usually wants ~1e-3).", range=LEARNING_RATE)
    num_train_epochs: float = field(1.0, "Passes over the training pairs.", range=EPOCHS)
    max_steps: int = field(-1, "If > 0: stop after this many optimiser steps (overrides num_train_epochs).",
                           range=OPTIONAL_STEPS)
    batch_size: int = field(8, "Pairs per device per step (2x sequences).", range=BATCH)
    gradient_accumulation_steps: int = field(1, "Batches accumulated per optimiser step.", range=ACCUMULATION)
    weight_decay: float = field(0.0, "AdamW weight decay.", range=SHARE)
    warmup_steps: float = field(0.0, "Linear warmup: a number of steps (>= 1) or a fraction of all steps (< 1).",
                                range=Range(0.0, MAX_STEPS))
    lr_scheduler_type: str = field("linear", "transformers scheduler name: linear, cosine, constant, ...")
    max_grad_norm: float = field(1.0, "Gradient clipping norm.", range=GRAD_NORM)
    seed: int = field(42, "Seed for the head's init, shuffling and the split.", range=SEED)

    # Data and loss
    max_length: int = field(
        512, "Longest prompt+completion in tokens. TRL drops (does not truncate) longer pairs; they are counted in "
             "the metrics. Capped at the backbone's max_position_embeddings.", range=Range(8, MAX_PROMPT_TOKENS))
    use_margin: bool = field(True, "Ask each pair for a reward gap in the loss, -logsigmoid(r_chosen - r_rejected - "
                             "margin), margin = consensus strength x judges' confidence x margin_scale (data.pair_margin).")
    margin_scale: float = field(1.0, "The gap a unanimous, certain pair asks for (in reward units).",
                                range=COEFFICIENT)
    center_rewards_coefficient: float | None = field(
        0.01, "Weight of mean(r^2) in the loss, pulling rewards towards zero (None: off).", range=COEFFICIENT)

    # Evaluation and logging
    eval_batch_size: int = field(16, "Sequences per scoring batch.", range=BATCH)
    calibration_bins: int = field(10, "Bins of the expected calibration error of sigmoid(r_chosen - r_rejected).",
                                  range=Range(1, 1000))
    logging_steps: int = field(5, "Call on_step every this many steps.", range=LOGGING_STEPS)
    processes: int = field(1, PROCESSES_HELP, range=PROCESSES)
    accelerate_config: str | None = field(None, ACCELERATE_CONFIG_HELP)

    def __post_init__(self):
        check_ranges(self)
        check_launch(self)
        require(self, isinstance(self.backbone, str) and self.backbone.strip() != "", "backbone",
                "must be a path or name")
        require(self, self.num_train_epochs > 0 or self.max_steps > 0, "num_train_epochs",
                "must be > 0 unless max_steps > 0")
        require(self, self.max_steps == -1 or self.max_steps > 0, "max_steps", "must be -1 (off) or > 0")
        if self.use_lora and self.learning_rate < 1e-4:
            warnings.warn(
                f"RewardConfig: learning_rate={self.learning_rate} is low for LoRA (try 1e-3)", stacklevel=3
            )
