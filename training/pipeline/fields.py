"""The helpers every trainer's config is built with (each config lives beside its trainer, TRL style:
`ppo/config.py`, `reward/config.py`, `dpo/config.py`, `online/config.py`, `rounds/config.py`, `sampling/config.py`).

One dataclass per trainer: a default, a `help` and (for every number) a `range` per field (`field`), checks
in `__post_init__` (`check_ranges` first, then `require`: a ValueError naming the field), `asdict(cfg)` stored
on the TrainingRun, loadable from YAML, the CLI or a dict through `config_from_dict`, which refuses unknown keys
and parses each value to its field's declared type ("3e-4" from YAML or a command line becomes the float 3e-4).

Every int and float setting states its range in its field's metadata (`field(…, range=Range(lo, hi))`); that
range is the one place it is stated: `check_range` enforces it for every parser (API, pages, commands, a chain's
steps, a stored run), the start form shows it, and docs/settings-ranges.md lists it. A number must be finite and
written in ASCII digits: "inf", "1e400", "nan" and "٣" are refused by name, never stored.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}
# A number as text: ASCII digits only (float() also reads "٣", "３", "1_000", "inf" and "nan"); at most 64 characters.
_ASCII_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: from `lo` to `hi`, both included unless marked open."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return bool(above and below)

    def rule(self) -> str:
        """'must be >= 1 and <= 64' (how an error states it)."""
        return (f"must be {'>' if self.lo_open else '>='} {_show(self.lo)} "
                f"and {'<' if self.hi_open else '<='} {_show(self.hi)}")

    def interval(self) -> str:
        """'[1, 64]', '(0, 1)' (how the docs state it)."""
        return f"{'(' if self.lo_open else '['}{_show(self.lo)}, {_show(self.hi)}{')' if self.hi_open else ']'}"


def _show(number) -> str:
    return str(number) if isinstance(number, int) else f"{number:g}".replace("e+0", "e").replace("e+", "e")


# Ranges several settings share. Generous for a GPU, yet bounded: one worker serves every project, so no single
# setting may ask it for 10^12 of anything.
MAX_NEW_TOKENS = 2048  # longest sampled answer; SmolLM2-135M's context is 8192 tokens, prompts need their share
MAX_PROMPT_TOKENS = 8192  # longest prompt (or prompt + answer) a run reads
MAX_STEPS = 100_000
MAX_BATCH = 4096
MAX_DB_ID = 10**18 - 1  # a row id (fits every database's 64-bit integer)
SEED = Range(0, 2**32 - 1)  # numpy's seeds
LEARNING_RATE = Range(0.0, 1.0, lo_open=True, hi_open=True)
SHARE = Range(0.0, 1.0)
DROPOUT = Range(0.0, 1.0, hi_open=True)
LORA_R = Range(1, 1024)
LORA_ALPHA = Range(1, 4096)
BATCH = Range(1, MAX_BATCH)
ACCUMULATION = Range(1, 1024)
EPOCHS = Range(0.0, 1000.0)
OPTIONAL_STEPS = Range(-1, MAX_STEPS)  # -1: off (the epochs decide); 0 is refused by the config's own check
STEPS = Range(1, MAX_STEPS)
LOGGING_STEPS = Range(1, MAX_STEPS)
GRAD_NORM = Range(0.0, 1e6, lo_open=True)
NEW_TOKENS = Range(1, MAX_NEW_TOKENS)
PROMPT_TOKENS = Range(1, MAX_PROMPT_TOKENS)
TEMPERATURE = Range(0.0, 100.0, lo_open=True)
TOP_P = Range(0.0, 1.0, lo_open=True)
COEFFICIENT = Range(0.0, 1e6)  # a loss weight or penalty: 0 (off) or more
POSITIVE = Range(0.0, 1e6, lo_open=True)
ROW_ID = Range(1, MAX_DB_ID)
PROMPTS_PER_RUN = Range(1, 10_000)  # prompts one publish run or DPO round samples (K answers each)


def field(default, help_text: str, *, range: Range | None = None, **kwargs):  # noqa: A002 (TRL-style metadata key)
    metadata = {"help": help_text} if range is None else {"help": help_text, "range": range}
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def require(cfg, condition: bool, field_name: str, rule: str) -> None:
    if not condition:
        raise ValueError(f"{type(cfg).__name__}.{field_name} {rule}, got {getattr(cfg, field_name)!r}")


def field_range(cls: type, name: str) -> Range | None:
    """The stated range of setting `name` of config class `cls` (None for settings that are not numbers)."""
    return next((f.metadata.get("range") for f in dataclasses.fields(cls) if f.name == name), None)


def _non_finite_path(value, path: str = "") -> str | None:
    """Where a non-finite float sits inside a structured setting ('' for the value itself), else None."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, dict):
            stack.extend((f"{where}.{key}", child) for key, child in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None


def check_range(cls: type, name: str, value: Any) -> None:
    """The one check of a setting's stated range: ValueError naming `cls.name` when `value` is a number outside
    it, or not finite (also inside a structured setting, which is stored as JSON)."""
    where = _non_finite_path(value)
    if where is not None:
        raise ValueError(f"{cls.__name__}.{name}{where} must be a finite number, got {value!r}")
    bounds = field_range(cls, name)
    if bounds is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value not in bounds:
        raise ValueError(f"{cls.__name__}.{name} {bounds.rule()}, got {value!r}")


def check_ranges(cfg) -> None:
    """Every setting of `cfg` within its stated range (each config's `__post_init__` calls this first)."""
    for f in dataclasses.fields(cfg):
        check_range(type(cfg), f.name, getattr(cfg, f.name))


def _number(text: str) -> float:
    text = text.strip()
    if len(text) > 64 or not _ASCII_NUMBER.fullmatch(text):
        raise ValueError("not a number in ASCII digits")
    return float(text)


def _parse_scalar(value: Any, kind: type) -> Any:
    """`value` as `kind` (bool, int, float or str); ValueError when it is not one."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _number(value) if isinstance(value, str) else value
        if isinstance(number, float) and math.isfinite(number) and number.is_integer():
            return int(number)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return _number(value)
    elif kind is str:
        if isinstance(value, (str, Path)):
            return str(value)
    elif kind in (dict, list):  # structured settings (e.g. a chain's per-step settings) pass as they are
        if isinstance(value, kind):
            return value
    else:
        raise TypeError(f"unsupported config field type {kind!r}")
    raise ValueError(f"not a {kind.__name__}")


def _is_non_finite_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return not math.isfinite(float(value.strip()))  # "inf", "Infinity", "nan", "1e400", "-inf"
    except (ValueError, OverflowError):
        return False


def parse_field_value(cls: type, name: str, value: Any) -> Any:
    """Parse one setting of config class `cls` to its declared type and check its stated range; ValueError naming
    `cls.name` otherwise."""
    declared = typing.get_type_hints(cls)[name]
    options = typing.get_args(declared) if isinstance(declared, types.UnionType) else (declared,)
    kinds = [kind for kind in options if kind is not type(None)]
    if type(None) in options and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    numeric = any(kind in (int, float) for kind in kinds)
    if numeric and (_is_non_finite_text(value) or (isinstance(value, float) and not math.isfinite(value))):
        raise ValueError(f"{cls.__name__}.{name} must be a finite number, got {value!r}")
    if numeric and isinstance(value, str) and not value.isascii():  # "٣" and "３" read as 3 by float()
        raise ValueError(f"{cls.__name__}.{name} must be a number written in ASCII digits (0-9), got {value!r}")
    for kind in kinds:
        try:
            parsed = _parse_scalar(value, kind)
        except (ValueError, OverflowError):
            continue
        check_range(cls, name, parsed)
        return parsed
    expected = " or ".join([k.__name__ for k in kinds] + (["None"] if type(None) in options else []))
    raise ValueError(f"{cls.__name__}.{name} must be {expected}, got {value!r}")


def config_from_dict(cls: type[T], values: dict[str, Any] | None) -> T:
    """Build a config dataclass from a plain dict (YAML, CLI, a stored run): unknown keys are refused by name,
    and each value is parsed to its field's declared type and checked against its stated range (ValueError naming
    the field when it cannot be)."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
    return cls(**{name: parse_field_value(cls, name, value) for name, value in values.items()})


def config_from_yaml(cls: type[T], path: str | Path) -> T:
    with open(path, encoding="utf-8") as fh:
        return config_from_dict(cls, yaml.safe_load(fh) or {})


# --- how a run is launched (shared by the trainers' configs) ------------------------------------------------

MAX_PROCESSES = 64
PROCESSES = Range(1, MAX_PROCESSES)
PROCESSES_HELP = ("Processes `accelerate launch` starts for this run (DDP; 1: the worker trains in its own process, "
                  "as before). Each PPO process samples and scores its share of every batch.")
ACCELERATE_CONFIG_HELP = ("An accelerate config file (DeepSpeed ZeRO, FSDP, several machines) by its bare file name "
                          "under $MODEL_DIR/accelerate/; blank: plain DDP on this machine. Launches even with 1 process.")


def check_launch(cfg) -> None:  # `processes` is bounded by its stated range (PROCESSES)
    name = cfg.accelerate_config
    require(cfg, name is None or (Path(name).name == name and name not in {".", ".."} and "\x00" not in name
                                 and name.endswith((".yaml", ".yml", ".json"))),
            "accelerate_config", "must be blank or a bare .yaml/.yml/.json file name (under $MODEL_DIR/accelerate/)")


def launches(cfg) -> bool:
    """Whether a run with these settings trains under `accelerate launch` (else in the worker's process)."""
    return getattr(cfg, "processes", 1) > 1 or bool(getattr(cfg, "accelerate_config", ""))
