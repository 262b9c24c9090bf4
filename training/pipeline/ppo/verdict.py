"""What the gate of a PPO, RLOO or GRPO run concluded, in one shape whether the run trained in the worker's process
(`report.PPOResult.gate_verdict()`) or under `accelerate launch` (`launch.py` writes it into the job's result as JSON,
`GateVerdict.from_dict` reads it back). Torch-free, so the Django side reads it without loading torch."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class GateVerdict:
    status: str  # how the run ended: completed, nan, kl_bound, reward_collapse, cancelled (report.STATUSES)
    passes_gate: bool  # publishable: completed, the held-out gate passed (or unjudged with its test passed), KL bounded
    message: str = ""  # why the run stopped early or why the gate failed, in words ("" when it passed)
    verdict: str = ""  # the held-out test's own verdict (`gate.GateReport.verdict`; "" when it never ran)
    judged: bool = True  # an independent judge scored the held-out answers (False: a candidate for people only)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GateVerdict:
        """The verdict a launched job wrote (its other keys are ignored)."""
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})
