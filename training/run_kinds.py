"""The kinds of TrainingRun, declared in one place: each kind's settings, the runner that does it, and
the gate its result must pass before it becomes active.

`gate(result) -> (passed, message)` is called by the runner on what the pipeline returned; a result
that fails its gate never becomes active (the message says why, on the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from training.models import TrainingRun
from training.pipeline.dpo.config import DPOConfig
from training.pipeline.online.config import GRPOConfig, RLOOConfig
from training.pipeline.ppo.config import PPOConfig
from training.pipeline.reward.config import RewardConfig
from training.pipeline.rounds.config import DPORoundConfig

from training.run_configs import PublishConfig, RetrainConfig
from training.runners import policy, publish, retrain, reward, rounds
from training.runners.base import Gate, RunContext, no_gate


@dataclass(frozen=True)
class RunKind:
    config_class: type
    runner: Callable[[RunContext], dict]
    gate: Gate = no_gate


RUN_KINDS: dict[str, RunKind] = {
    TrainingRun.Kind.REWARD: RunKind(config_class=RewardConfig, runner=reward.run_reward, gate=reward.reward_gate),
    TrainingRun.Kind.PPO: RunKind(config_class=PPOConfig, runner=policy.run_ppo, gate=policy.ppo_gate),
    TrainingRun.Kind.DPO: RunKind(config_class=DPOConfig, runner=policy.run_dpo, gate=policy.dpo_gate),
    TrainingRun.Kind.RLOO: RunKind(config_class=RLOOConfig, runner=policy.run_rloo, gate=policy.ppo_gate),
    TrainingRun.Kind.GRPO: RunKind(config_class=GRPOConfig, runner=policy.run_grpo, gate=policy.ppo_gate),
    TrainingRun.Kind.PUBLISH: RunKind(config_class=PublishConfig, runner=publish.run_publish),
    TrainingRun.Kind.RETRAIN: RunKind(config_class=RetrainConfig, runner=retrain.run_retrain),
    # Its DPO gate (`policy.dpo_gate`) is applied by the training half itself (training.runners.rounds.train).

    TrainingRun.Kind.DPO_ROUND: RunKind(config_class=DPORoundConfig, runner=rounds.run_dpo_round),
}


def run_kind(kind: str) -> RunKind:
    try:
        return RUN_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown kind of run {kind!r}") from None
