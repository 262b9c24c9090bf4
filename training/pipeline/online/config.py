"""Settings of the online methods, RLOO and GRPO through `trl.RLOOTrainer` / `trl.GRPOTrainer` (see `trainer`).

TRL style (a default and a `help` per field, `require` checks naming the field; see `pipeline.fields`).
CPU-friendly defaults that differ from TRL's: LoRA on (the KL
reference is the base with adapters off: no second copy), fp32 (bf16 and gradient checkpointing always off),
4 generations per prompt, 64 new tokens at temperature 0.8 and top-p 0.95 (publishing's settings), a learning
rate for LoRA (1e-4, TRL: 1e-6), β = 0.05 for both (GRPO's TRL default is 0: no KL at all), no reports. The
gate settings and KL bounds are PPO's, the same fields (`ppo.config.GateSettings`).
"""

from __future__ import annotations

import dataclasses

from ..fields import (
    ACCELERATE_CONFIG_HELP, ACCUMULATION, BATCH, COEFFICIENT, DROPOUT, GRAD_NORM, LEARNING_RATE, LOGGING_STEPS,
    LORA_ALPHA, LORA_R, NEW_TOKENS, PROCESSES, PROCESSES_HELP, PROMPT_TOKENS, SEED, STEPS, TEMPERATURE, TOP_P, Range,
    check_launch, field, require, check_ranges,
)
from ..ppo.config import GateSettings


@dataclasses.dataclass
class OnlineTrainingSettings:
    """What RLOO and GRPO share besides the gate: the policy, the sampling and the optimisation."""

    # Policy
    policy: str = field("smollm2-135m-instruct", "Registered policy directory (or a name under $MODEL_DIR).")
    verify_policy: bool = field(True, "Check the policy against its manifest before loading.")
    use_lora: bool = field(True, "Train LoRA adapters; the KL reference is the base with adapters off (no copy).")
    lora_r: int = field(16, "LoRA rank.", range=LORA_R)
    lora_alpha: int = field(32, "LoRA scaling numerator.", range=LORA_ALPHA)
    lora_dropout: float = field(0.0, "Dropout on the LoRA branch.", range=DROPOUT)
    # Sampling
    num_generations: int = field(4, "Completions sampled per prompt (the group the baseline is computed over).",
                                 range=Range(2, 64))
    max_completion_length: int = field(64, "Longest completion in tokens (publishing's max_new_tokens).",
                                       range=NEW_TOKENS)
    temperature: float = field(0.8, "Sampling temperature (publishing's).", range=TEMPERATURE)
    top_p: float = field(0.95, "Nucleus sampling (publishing's).", range=TOP_P)
    max_prompt_length: int = field(256, "Prompts longer than this many tokens are dropped.", range=PROMPT_TOKENS)
    # Optimisation
    max_steps: int = field(16, "Optimiser steps.", range=STEPS)
    batch_size: int = field(8, "Completions per optimiser step (a multiple of num_generations: batch_size / "
                                "num_generations prompts per step).", range=BATCH)
    gradient_accumulation_steps: int = field(1, "Batches accumulated per optimiser step.", range=ACCUMULATION)
    num_iterations: int = field(1, "Updates per generated batch (μ); > 1 reuses samples with the clipped ratio.",
                                range=Range(1, 100))
    epsilon: float = field(0.2, "Clip range of the importance ratio.",
                           range=Range(0.0, 1.0, lo_open=True, hi_open=True))
    beta: float = field(0.05, "KL coefficient against the reference (0: no KL term).", range=COEFFICIENT)
    learning_rate: float = field(1e-4, "AdamW learning rate (LoRA).", range=LEARNING_RATE)
    max_grad_norm: float = field(1.0, "Gradient clipping norm.", range=GRAD_NORM)
    logging_steps: int = field(1, "Report metrics every this many steps.", range=LOGGING_STEPS)
    seed: int = field(0, "Seed for sampling, shuffling and the gate's bootstrap.", range=SEED)


@dataclasses.dataclass
class OnlineConfig(GateSettings, OnlineTrainingSettings):
    """What RLOO and GRPO share: their training settings, the gate and KL bounds (PPO's, `GateSettings`: on RLOO and
    GRPO the KL bounds apply to the held-out answers only), the launch."""

    # Launch
    processes: int = field(1, PROCESSES_HELP + " RLOO/GRPO: batch_size is the global batch, shared by the "
                               "processes (a multiple of them).", range=PROCESSES)
    accelerate_config: str | None = field(None, ACCELERATE_CONFIG_HELP)

    @property
    def max_new_tokens(self) -> int:  # the name the shared sampling and evaluation code reads (PPO's)
        return self.max_completion_length

    def __post_init__(self):
        check_ranges(self)  # num_generations >= 2: the baseline needs a group
        check_launch(self)
        self._check_gate()
        require(self, isinstance(self.policy, str) and self.policy.strip() != "", "policy", "must be a path or name")
        require(self, self.batch_size % self.num_generations == 0, "batch_size",
                f"must be a multiple of num_generations ({self.num_generations})")
        require(self, self.batch_size % self.processes == 0, "batch_size",
                f"must be a multiple of processes ({self.processes}): each process takes an equal share")


@dataclasses.dataclass
class RLOOConfig(OnlineConfig):
    """Settings of `trainer.train_rloo`: REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024): each
    completion's advantage is its reward minus the mean reward of the other completions of its prompt."""

    normalize_advantages: bool = field(False, "Scale the advantages of each generated batch to unit variance.")


@dataclasses.dataclass
class GRPOConfig(OnlineConfig):
    """Settings of `trainer.train_grpo`: Group Relative Policy Optimisation (Shao et al. 2024): advantages are
    rewards standardised within each prompt's group of completions; no value model."""

    loss_type: str = field("dapo", "TRL loss aggregation: grpo, dr_grpo, dapo (TRL's default) or bnpo.")
    scale_rewards: str = field("group", "Reward scaling: group (by the group's std), batch, or none.")

    def __post_init__(self):
        super().__post_init__()
        require(self, self.loss_type in {"grpo", "dr_grpo", "dapo", "bnpo"}, "loss_type",
                "must be grpo, dr_grpo, dapo or bnpo")
        require(self, self.scale_rewards in {"group", "batch", "none"}, "scale_rewards", "must be group, batch or none")
