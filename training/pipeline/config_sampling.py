"""How answers are sampled for people to judge: the settings publishing and an iterative-DPO round share."""

from __future__ import annotations

import dataclasses

from .config import _field, _require


@dataclasses.dataclass
class SamplingSettings:
    """How a run samples answers for people to judge: publishing and a DPO round's K answers. PPO's rollouts keep
    their own fields with the same defaults (their help says what the ratio does with them)."""

    max_new_tokens: int = _field(64, "Longest answer in tokens (PPO samples its rollouts with the same settings).")
    temperature: float = _field(0.8, "Sampling temperature (above 0: K answers at temperature 0 would be one).")
    top_p: float = _field(0.95, "Nucleus sampling.")
    seed: int = _field(0, "Sampling seed.")

    def _check_sampling(self) -> None:  # called by each config's __post_init__
        _require(self, self.max_new_tokens >= 1, "max_new_tokens", "must be at least 1")
        _require(self, self.temperature > 0.0, "temperature", "must be above 0")
        _require(self, 0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]")
