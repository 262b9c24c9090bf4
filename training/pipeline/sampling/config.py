"""How answers are sampled for people to judge: the settings publishing and an iterative-DPO round share."""

from __future__ import annotations

import dataclasses

from ..fields import NEW_TOKENS, SEED, TEMPERATURE, TOP_P, field, check_ranges


@dataclasses.dataclass
class SamplingSettings:
    """How a run samples answers for people to judge: publishing and a DPO round's K answers. PPO's rollouts keep
    their own fields with the same defaults (their help says what the ratio does with them)."""

    max_new_tokens: int = field(64, "Longest answer in tokens (PPO samples its rollouts with the same settings).",
                                range=NEW_TOKENS)
    temperature: float = field(0.8, "Sampling temperature (above 0: K answers at temperature 0 would be one).",
                               range=TEMPERATURE)
    top_p: float = field(0.95, "Nucleus sampling.", range=TOP_P)
    seed: int = field(0, "Sampling seed.", range=SEED)

    def _check_sampling(self) -> None:  # called by each config's __post_init__
        check_ranges(self)  # temperature above 0: K answers at temperature 0 would be one
