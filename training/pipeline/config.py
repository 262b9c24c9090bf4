"""One dataclass per trainer, TRL style: a default and a `help` for every field, checks in
`__post_init__`, `asdict(cfg)` stored on the TrainingRun, loadable from YAML or a dict.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def config_from_dict(cls: type[T], values: dict[str, Any] | None) -> T:
    """Build a config dataclass from a plain dict, refusing unknown keys by name."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
    return cls(**values)


def config_from_yaml(cls: type[T], path: str | Path) -> T:
    with open(path, encoding="utf-8") as fh:
        return config_from_dict(cls, yaml.safe_load(fh) or {})


# --- RewardConfig (owned by the reward-model work) --------------------------------------------


@dataclasses.dataclass
class RewardConfig:
    """Settings of `reward.train_reward_model` (a Bradley-Terry reward model through `trl.RewardTrainer`).

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
    lora_r: int = dataclasses.field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = dataclasses.field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = dataclasses.field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    disable_dropout: bool = dataclasses.field(
        default=True, metadata={"help": "Turn the backbone's dropout off (TRL's default for reward models)."}
    )

    # Optimisation
    learning_rate: float = dataclasses.field(
        default=1e-4, metadata={"help": "Peak AdamW learning rate (LoRA usually wants ~1e-3)."}
    )
    num_train_epochs: float = dataclasses.field(default=1.0, metadata={"help": "Passes over the training pairs."})
    max_steps: int = dataclasses.field(
        default=-1, metadata={"help": "If > 0: stop after this many optimiser steps (overrides num_train_epochs)."}
    )
    batch_size: int = dataclasses.field(default=8, metadata={"help": "Pairs per device per step (2x sequences)."})
    gradient_accumulation_steps: int = dataclasses.field(
        default=1, metadata={"help": "Batches accumulated per optimiser step."}
    )
    weight_decay: float = dataclasses.field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = dataclasses.field(
        default=0.0, metadata={"help": "Linear warmup: a number of steps (>= 1) or a fraction of all steps (< 1)."}
    )
    lr_scheduler_type: str = dataclasses.field(
        default="linear", metadata={"help": "transformers scheduler name: linear, cosine, constant, ..."}
    )
    max_grad_norm: float = dataclasses.field(default=1.0, metadata={"help": "Gradient clipping norm."})
    seed: int = dataclasses.field(default=42, metadata={"help": "Seed for the head's init, shuffling and the split."})

    # Data and loss
    max_length: int = dataclasses.field(
        default=512,
        metadata={
            "help": "Longest prompt+completion in tokens. TRL drops (does not truncate) longer pairs; they are "
            "counted in the metrics. Capped at the backbone's max_position_embeddings."
        },
    )
    use_margin: bool = dataclasses.field(
        default=False,
        metadata={"help": "Use each pair's `margin` in the loss: -logsigmoid(r_chosen - r_rejected - margin)."},
    )
    center_rewards_coefficient: float | None = dataclasses.field(
        default=0.01,
        metadata={"help": "Weight of mean(r^2) in the loss, pulling rewards towards zero (None: off)."},
    )

    # Evaluation and logging
    eval_fraction: float = dataclasses.field(
        default=0.1,
        metadata={"help": "Share of prompts held out for evaluation when no eval rows are given (0: none)."},
    )
    eval_batch_size: int = dataclasses.field(default=16, metadata={"help": "Sequences per scoring batch."})
    calibration_bins: int = dataclasses.field(
        default=10, metadata={"help": "Bins of the expected calibration error of sigmoid(r_chosen - r_rejected)."}
    )
    logging_steps: int = dataclasses.field(default=5, metadata={"help": "Call on_step every this many steps."})

    def __post_init__(self):
        def require(condition: bool, field_name: str, rule: str) -> None:
            if not condition:
                raise ValueError(f"RewardConfig.{field_name} {rule}, got {getattr(self, field_name)!r}")

        require(isinstance(self.backbone, str) and self.backbone.strip() != "", "backbone", "must be a path or name")
        require(self.lora_r >= 1, "lora_r", "must be >= 1")
        require(self.lora_alpha > 0, "lora_alpha", "must be > 0")
        require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        require(self.learning_rate > 0, "learning_rate", "must be > 0")
        require(self.num_train_epochs > 0 or self.max_steps > 0, "num_train_epochs", "must be > 0 unless max_steps > 0")
        require(self.max_steps == -1 or self.max_steps > 0, "max_steps", "must be -1 (off) or > 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps", "must be >= 1")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(self.max_grad_norm > 0, "max_grad_norm", "must be > 0")
        require(self.max_length >= 8, "max_length", "must be >= 8 tokens")
        require(
            self.center_rewards_coefficient is None or self.center_rewards_coefficient >= 0,
            "center_rewards_coefficient",
            "must be None or >= 0",
        )
        require(0.0 <= self.eval_fraction < 1.0, "eval_fraction", "must be in [0, 1)")
        require(self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        require(self.calibration_bins >= 1, "calibration_bins", "must be >= 1")
        require(self.logging_steps >= 1, "logging_steps", "must be >= 1")
        if self.use_lora and self.learning_rate < 1e-4:
            warnings.warn(
                f"RewardConfig: learning_rate={self.learning_rate} is low for LoRA (try 1e-3)", stacklevel=3
            )


# --- PPOConfig and DPOConfig (owned by the policy-optimisation work) ---------------------------
