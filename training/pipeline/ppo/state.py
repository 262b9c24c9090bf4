"""What PPO's loop works on (`loop.Trainer`), built by keyword from a few parts: the `Models`, the `Prompts`, the
`Callbacks`, and the optimisation's own state. RLOO and GRPO answer the gate's held-out prompts through the same
`Models`, `Prompts` and `Callbacks` (`online.trainer.Evaluator`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..callbacks import OnStep, ShouldStop, TrainingCancelled
from ..data import TextOrMessages
from . import dist
from .config import PPOConfig
from .math import AdaptiveKLController, FixedKLController, RunningMoments
from .model import ValueHead

RewardFn = Callable[[list[TextOrMessages], list[str]], Sequence[float]]  # one score per completion


@dataclass
class Models:
    """The networks a run works with."""

    policy: Any  # the policy being trained (a peft model with LoRA)
    tokenizer: Any
    reference: Any = None  # a frozen reference; None with LoRA: the policy with its adapters disabled
    base_model: Any = None  # the original base for the KL-to-base log and bound; None: the reference is the base
    value_head: ValueHead | None = None  # PPO's critic (RLOO and GRPO have none)
    train_policy: Any = None  # the modules the updates run through (DDP-wrapped under accelerate; else the policy)
    train_value_head: Any = None


@dataclass
class Prompts:
    """The prompts as token ids (`*_queries`, those within max_prompt_length) and as given (`*_texts`: text or chat
    messages, what the reward function and the judge read), for training and for the held-out gate."""

    train_queries: list[list[int]] = field(default_factory=list)
    train_texts: list[TextOrMessages] = field(default_factory=list)
    eval_queries: list[list[int]] = field(default_factory=list)
    eval_texts: list[TextOrMessages] = field(default_factory=list)


@dataclass
class Callbacks:
    """What a run calls out to: the reward it optimises, the held-out judge, progress and cancellation."""

    reward_fn: RewardFn
    judge: RewardFn  # scores the gate's held-out answers (a reward model the policy does not optimise; else reward_fn)
    on_step: OnStep | None = None
    should_stop: ShouldStop | None = None


@dataclass
class Trainer:
    """What the loop works on: the settings, the models, the prompts, the callbacks and the optimisation's state."""

    cfg: PPOConfig
    models: Models
    prompts: Prompts
    callbacks: Callbacks
    optimizer: torch.optim.Optimizer
    trainable: list[torch.nn.Parameter]
    kl_ctl: FixedKLController | AdaptiveKLController
    generator: torch.Generator
    moments: RunningMoments = field(default_factory=RunningMoments)  # of the raw scores, for the EOS penalty
    seen_scores: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # earlier batches', for collapse
    accelerator: Any = None  # accelerate's Accelerator when several processes train together (`dist`)
    lockstep: bool = False  # inside the training loop every process polls, and stops, together
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def poll(self, iteration: int, what: str) -> None:
        asked = self.callbacks.should_stop is not None and self.callbacks.should_stop()
        if self.lockstep:
            asked = dist.any_process(self.accelerator, asked)
        if asked:
            raise TrainingCancelled(iteration, what)

    @property
    def is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process
