"""The settings of every kind of run, as dataclasses (TRL style: a default and a `help` per field).

The trainers' own settings live in `training.pipeline.config`; publishing and the retrain chain have
theirs here. `validate_config` is how a run's settings are checked before the run is queued, so a bad
setting is a 400 (or a command error) naming it, never a failure inside the worker.
"""

from __future__ import annotations

import dataclasses

from training.models import TrainingRun
from training.pipeline.config import DPOConfig, PPOConfig, RewardConfig, config_from_dict

STEP_KINDS = (TrainingRun.Kind.REWARD, TrainingRun.Kind.PPO, TrainingRun.Kind.DPO, TrainingRun.Kind.PUBLISH)


@dataclasses.dataclass
class PublishConfig:
    """Settings of a publish run: which prompts get fresh completions from the active policy."""

    prompts: str = dataclasses.field(default="without_completions", metadata={
        "help": "'without_completions' (prompts waiting for samples) or 'all' (new samples for every prompt)."})
    max_prompts: int = dataclasses.field(default=64, metadata={"help": "At most this many prompts per run."})
    completions_per_prompt: int | None = dataclasses.field(default=None, metadata={
        "help": "K; default: the project's completions_per_task."})
    max_new_tokens: int = dataclasses.field(default=96, metadata={"help": "Longest completion in tokens."})
    temperature: float = dataclasses.field(default=0.8, metadata={"help": "Sampling temperature."})
    top_p: float = dataclasses.field(default=0.95, metadata={"help": "Nucleus sampling."})
    seed: int = dataclasses.field(default=0, metadata={"help": "Sampling seed."})
    head_to_head_share: float = dataclasses.field(default=0.25, metadata={
        "help": "Share of prompts where one completion comes from the previous best version."})
    policy_version: int | None = dataclasses.field(default=None, metadata={
        "help": "ModelVersion id of the policy to sample from; default: the project's active policy."})

    def __post_init__(self):
        if self.prompts not in {"without_completions", "all"}:
            raise ValueError("prompts must be 'without_completions' or 'all'")
        if self.max_prompts < 1:
            raise ValueError("max_prompts must be at least 1")
        if self.completions_per_prompt is not None and not 2 <= self.completions_per_prompt <= 4:
            raise ValueError("completions_per_prompt must be between 2 and 4")
        if not 0.0 <= self.head_to_head_share <= 1.0:
            raise ValueError("head_to_head_share must be between 0 and 1")


@dataclasses.dataclass
class RetrainConfig:
    """Settings of the retrain chain: snapshot → reward model → PPO → publish (or DPO → publish)."""

    method: str = dataclasses.field(default="ppo", metadata={"help": "'ppo' (with a new reward model) or 'dpo'."})
    steps: dict = dataclasses.field(default_factory=dict, metadata={
        "help": "Settings of each step by kind: {'reward': {…}, 'ppo': {…}, 'dpo': {…}, 'publish': {…}}."})
    trigger: dict = dataclasses.field(default_factory=dict, metadata={
        "help": "Why the schedule started it (new judgements, agreement); informational."})

    def __post_init__(self):
        if self.method not in {"ppo", "dpo"}:
            raise ValueError("method must be 'ppo' or 'dpo'")
        unknown = sorted(set(self.steps) - set(STEP_KINDS))
        if unknown:
            raise ValueError(f"steps: unknown kind(s) of run {', '.join(unknown)}")
        for kind, settings in self.steps.items():  # a bad step setting is refused now, not mid-chain
            try:
                parse_config(kind, settings)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"steps.{kind}: {exc}") from None

    def chain(self) -> list[str]:
        first = [TrainingRun.Kind.REWARD, TrainingRun.Kind.PPO] if self.method == "ppo" else [TrainingRun.Kind.DPO]
        return [*first, TrainingRun.Kind.PUBLISH]


CONFIG_CLASSES: dict[str, type] = {
    TrainingRun.Kind.REWARD: RewardConfig,
    TrainingRun.Kind.PPO: PPOConfig,
    TrainingRun.Kind.DPO: DPOConfig,
    TrainingRun.Kind.PUBLISH: PublishConfig,
    TrainingRun.Kind.RETRAIN: RetrainConfig,
}


def parse_config(kind: str, config: dict | None):
    """The run's settings as its dataclass (defaults filled in), or ValueError/TypeError naming the field."""
    if kind not in CONFIG_CLASSES:
        raise ValueError(f"unknown kind of run {kind!r}")
    return config_from_dict(CONFIG_CLASSES[kind], config or {})


def validate_config(kind: str, config: dict | None) -> dict:
    """The settings to store on the run: the dataclass as a dict."""
    return dataclasses.asdict(parse_config(kind, config))
