"""The settings of an iterative-DPO round (TRL style: a default, a `help` and, for a number, a `range` per field)."""

from __future__ import annotations

import dataclasses

from training.pipeline.fields import COEFFICIENT, PROMPTS_PER_RUN, ROW_ID, SEED, Range, field, config_from_dict
from training.pipeline.dpo.config import DPOConfig
from training.pipeline.sampling.config import SamplingSettings

SELECT_BY = ("gap", "disagreement")
ROUND_OWNS = ("policy", "processes", "accelerate_config")  # the round decides these DPO settings itself
DPO_DEFAULTS = {"max_length": 256}


@dataclasses.dataclass
class DPORoundConfig(SamplingSettings):
    """One round: how many answers, how many pairs go to people, when the human share counts as judged, how the
    two kinds of pairs are weighted, and the DPO settings (`dpo`, as for a DPO run)."""

    completions_per_prompt: int = field(4, "K: answers the active policy samples per prompt (K·(K−1)/2 pairs).",
                                        range=Range(2, 8))
    max_prompts: int = field(32, "Prompts sampled this round (drawn at random, seeded by `seed` and the round).",
                             range=PROMPTS_PER_RUN)
    budget: int = field(16, "Pairs published to annotators: the most uncertain ones. The reward model labels the rest.",
                        range=Range(0, PROMPTS_PER_RUN.hi * 28))  # at most every pair: K = 8 gives 28 per prompt
    select_by: str = field("gap", "'gap': smallest reward gap first; 'disagreement': largest disagreement between "
                                   "the two newest reward models first (needs two; else 'gap').")
    min_human_judged: float = field(1.0, "Share of the round's tasks that must be complete before DPO trains.",
                                    range=Range(0.0, 1.0, lo_open=True))
    human_weight: float = field(1.0, "A human pair's loss weight: this × the judges' confidence factor (½ for "
                                "'unsure' … 1 for 'certain'); how sure the consensus is sets its label smoothing.",
                                range=COEFFICIENT)
    model_pair_weight: float = field(1.0, "A reward-model pair's loss weight: this × (2p − 1), p its calibrated win "
                                     "probability (pairs under p = 0.6 are left out); smoothed by 1 − p.", range=COEFFICIENT)
    test_fraction: float = field(0.1, "Share of prompts held out for the DPO gate (split by prompt id).",
                                 range=Range(0.0, 1.0, hi_open=True))
    split_seed: int = field(0, "Seed of the held-out split.", range=SEED)
    dpo: dict = field(None, "DPO settings as for a DPO run (beta, learning_rate, max_steps …); the round "
                             "chooses the policy.", )
    round: int | None = field(None, "The round this run serves (set by the platform; blank starts a new round).",
                              range=ROW_ID)

    def __post_init__(self):
        self._check_sampling()  # every number within its stated range
        self.dpo = {**DPO_DEFAULTS, **(self.dpo or {})}
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {', '.join(SELECT_BY)}, got {self.select_by!r}")
        owned = sorted(set(self.dpo) & set(ROUND_OWNS))
        if owned:
            raise ValueError(f"dpo: {', '.join(owned)} cannot be set: a round trains its own policy, in-process")
        try:
            self.dpo_config(policy="policy")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"dpo: {exc}") from None

    def dpo_config(self, *, policy: str) -> DPOConfig:
        return config_from_dict(DPOConfig, {**self.dpo, "policy": policy})
