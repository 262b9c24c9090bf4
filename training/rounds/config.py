"""The settings of an iterative-DPO round (TRL style: a default and a `help` per field)."""

from __future__ import annotations

import dataclasses

from training.pipeline.config import DPOConfig, config_from_dict
from training.pipeline.config_sampling import SamplingSettings

SELECT_BY = ("gap", "disagreement")
ROUND_OWNS = ("policy", "processes", "accelerate_config")  # the round decides these DPO settings itself
DPO_DEFAULTS = {"max_length": 256}


def _field(default, help_text: str, **kwargs):
    return dataclasses.field(default=default, metadata={"help": help_text}, **kwargs)


@dataclasses.dataclass
class DPORoundConfig(SamplingSettings):
    """One round: how many answers, how many pairs go to people, when the human share counts as judged, how the
    two kinds of pairs are weighted, and the DPO settings (`dpo`, as for a DPO run)."""

    completions_per_prompt: int = _field(4, "K: answers the active policy samples per prompt (K·(K−1)/2 pairs).")
    max_prompts: int = _field(32, "Prompts sampled this round (drawn at random, seeded by `seed` and the round).")
    budget: int = _field(16, "Pairs published to annotators: the most uncertain ones. The reward model labels the rest.")
    select_by: str = _field("gap", "'gap': smallest reward gap first; 'disagreement': largest disagreement between "
                                   "the two newest reward models first (needs two; else 'gap').")
    min_human_judged: float = _field(1.0, "Share of the round's tasks that must be complete before DPO trains.")
    human_weight: float = _field(1.0, "A human pair's loss weight: this × consensus margin × confidence weight.")
    model_pair_weight: float = _field(1.0, "A reward-model pair's loss weight.")
    test_fraction: float = _field(0.1, "Share of prompts held out for the DPO gate (split by prompt id).")
    split_seed: int = _field(0, "Seed of the held-out split.")
    dpo: dict = _field(None, "DPO settings as for a DPO run (beta, learning_rate, max_steps …); the round "
                             "chooses the policy.", )
    round: int | None = _field(None, "The round this run serves (set by the platform; blank starts a new round).")

    def __post_init__(self):
        self._check_sampling()
        self.dpo = {**DPO_DEFAULTS, **(self.dpo or {})}
        checks = [
            (2 <= self.completions_per_prompt <= 8, "completions_per_prompt", "must be between 2 and 8"),
            (self.max_prompts >= 1, "max_prompts", "must be at least 1"),
            (self.budget >= 0, "budget", "must be 0 or more"),
            (self.select_by in SELECT_BY, "select_by", f"must be one of {', '.join(SELECT_BY)}"),
            (0.0 < self.min_human_judged <= 1.0, "min_human_judged", "must be above 0 and at most 1"),
            (self.human_weight >= 0.0, "human_weight", "must be 0 or more"),
            (self.model_pair_weight >= 0.0, "model_pair_weight", "must be 0 or more"),
            (0.0 <= self.test_fraction < 1.0, "test_fraction", "must be at least 0 and below 1"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ValueError(f"{name} {rule}, got {getattr(self, name)!r}")
        owned = sorted(set(self.dpo) & set(ROUND_OWNS))
        if owned:
            raise ValueError(f"dpo: {', '.join(owned)} cannot be set: a round trains its own policy, in-process")
        try:
            self.dpo_config(policy="policy")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"dpo: {exc}") from None

    def dpo_config(self, *, policy: str) -> DPOConfig:
        return config_from_dict(DPOConfig, {**self.dpo, "policy": policy})
