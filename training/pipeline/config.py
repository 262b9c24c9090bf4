"""One dataclass per trainer, TRL style: a default and a `help` for every field, checks in
`__post_init__`, `asdict(cfg)` stored on the TrainingRun, loadable from YAML or a dict.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def config_from_dict(cls: type[T], values: dict[str, Any] | None) -> T:
    """Build a config dataclass from a plain dict, refusing unknown keys by name."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
    return cls(**values)


def config_from_yaml(cls: type[T], path: str | Path) -> T:
    with open(path, encoding="utf-8") as fh:
        return config_from_dict(cls, yaml.safe_load(fh) or {})


# --- RewardConfig (owned by the reward-model work) --------------------------------------------


# --- PPOConfig and DPOConfig (owned by the policy-optimisation work) ---------------------------
