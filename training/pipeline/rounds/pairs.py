"""The pure half of an iterative-DPO round: every pair of a prompt's answers, how uncertain the reward model is
about each, which go to people (the `budget` most uncertain) and the rows the reward model labels itself.

Uncertainty (`select_by`):
- "gap": the reward gap |r_a − r_b| of the active reward model; the smallest gaps go to people first.
- "disagreement": |d₁/s₁ − d₂/s₂|, where d is a model's signed gap r_a − r_b and s the spread (standard
  deviation) of its rewards over the round, so two models on different scales compare; the largest first.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScoredPair:
    prompt_index: int
    a: str
    b: str
    reward_a: float
    reward_b: float
    uncertainty: float  # lower = less certain (the sort key: people get the lowest)

    @property
    def gap(self) -> float:
        return abs(self.reward_a - self.reward_b)


def distinct(texts: list[str]) -> list[str]:
    return [t for t in dict.fromkeys(texts) if t.strip()]


def _spread(values: list[float]) -> float:
    return statistics.pstdev(values) if len(values) > 1 and statistics.pstdev(values) > 0 else 1.0


def scored_pairs(answers: list[list[str]], rewards: list[list[float]],
                 second_rewards: list[list[float]] | None = None, select_by: str = "gap") -> list[ScoredPair]:
    """Every pair of each prompt's distinct answers (`answers[i]`, scored `rewards[i]`), least certain first.
    `second_rewards`: the same answers scored by the previous reward model, for "disagreement"."""
    use_second = select_by == "disagreement" and second_rewards is not None
    spread = _spread([r for row in rewards for r in row])
    spread2 = _spread([r for row in second_rewards for r in row]) if use_second else 1.0
    pairs = []
    for index, (texts, scores) in enumerate(zip(answers, rewards)):
        for (i, a), (j, b) in itertools.combinations(enumerate(texts), 2):
            if use_second:
                d1, d2 = scores[i] - scores[j], second_rewards[index][i] - second_rewards[index][j]
                key = -abs(d1 / spread - d2 / spread2)
            else:
                key = abs(scores[i] - scores[j])
            pairs.append(ScoredPair(index, a, b, float(scores[i]), float(scores[j]), key))
    return sorted(pairs, key=lambda p: (p.uncertainty, p.prompt_index))


def split_budget(pairs: list[ScoredPair], budget: int) -> tuple[list[ScoredPair], list[ScoredPair]]:
    """(pairs for people: the `budget` least certain, pairs the reward model labels: the rest)."""
    return pairs[:budget], pairs[budget:]


def best_vs_worst(pairs: list[ScoredPair], skip: list[ScoredPair] = ()) -> list[ScoredPair]:
    """Per prompt, the pair of its highest- and lowest-rewarded answers (the reward model's surest label of that
    prompt; the other pairs of the prompt only repeat it with less evidence), unless that pair is in `skip` (gone
    to people). In prompt order."""
    skipped = {(p.prompt_index, frozenset((p.a, p.b))) for p in skip}
    widest: dict[int, ScoredPair] = {}
    for pair in pairs:
        best = widest.get(pair.prompt_index)
        if best is None or pair.gap > best.gap:
            widest[pair.prompt_index] = pair
    return [pair for index, pair in sorted(widest.items())
            if (index, frozenset((pair.a, pair.b))) not in skipped]


def model_row(pair: ScoredPair, prompt: Any, prompt_id: str, weight: float) -> dict:
    """A pair labelled by the reward model, in TRL's preference format: chosen = the higher reward."""
    chosen, rejected = (pair.a, pair.b) if pair.reward_a >= pair.reward_b else (pair.b, pair.a)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "prompt_id": prompt_id,
            "chosen_reward": max(pair.reward_a, pair.reward_b), "rejected_reward": min(pair.reward_a, pair.reward_b),
            "gap": pair.gap, "source": "reward_model", "weight": weight}
