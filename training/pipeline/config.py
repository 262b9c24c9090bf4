"""One dataclass per trainer, TRL style: a default, a `help` and (for every number) a `range` per field, checks
in `__post_init__` (`check_ranges` first, then `_require`: a ValueError naming the field), `asdict(cfg)` stored
on the TrainingRun, loadable from YAML, the CLI or a dict through `config_from_dict`, which refuses unknown keys
and parses each value to its field's declared type ("3e-4" from YAML or a command line becomes the float 3e-4).

Every int and float setting states its range in its field's metadata (`_field(…, range=Range(lo, hi))`); that
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
import warnings
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


def _field(default, help_text: str, *, range: Range | None = None, **kwargs):  # noqa: A002 (TRL-style metadata key)
    metadata = {"help": help_text} if range is None else {"help": help_text, "range": range}
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def _require(cfg, condition: bool, field_name: str, rule: str) -> None:
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


def _check_launch(cfg) -> None:  # `processes` is bounded by its stated range (PROCESSES)
    name = cfg.accelerate_config
    _require(cfg, name is None or (Path(name).name == name and name not in {".", ".."} and "\x00" not in name
                                 and name.endswith((".yaml", ".yml", ".json"))),
             "accelerate_config", "must be blank or a bare .yaml/.yml/.json file name (under $MODEL_DIR/accelerate/)")


def launches(cfg) -> bool:
    """Whether a run with these settings trains under `accelerate launch` (else in the worker's process)."""
    return getattr(cfg, "processes", 1) > 1 or bool(getattr(cfg, "accelerate_config", ""))


# --- the gate and KL bounds (shared by PPO, RLOO and GRPO) ---------------------------------------------------


@dataclasses.dataclass
class GateSettings:
    """The held-out gate (gate.py, `ppo_report.conclude`) and KL bounds shared by PPO, RLOO and GRPO. A mixin listed
    before the config's training settings (`PPOConfig(GateSettings, PPOTrainingSettings)`): dataclasses put the last
    base's fields first, so these come after the training ones and before the config's own (the launch)."""

    kl_bound: float = _field(20.0, "Publish nothing (PPO: also stop training) when the mean summed KL per answer to "
                                   "the reference exceeds this.", range=POSITIVE)
    kl_base_bound: float | None = _field(
        60.0, "Publish nothing (PPO: also stop training) when the mean summed KL per answer to the lineage's ORIGINAL "
              "base exceeds this: each run's reference is its parent, so drift would add up across retrains. None: off.",
        range=POSITIVE)
    gate_samples_per_prompt: int = _field(4, "Samples of the candidate and of the parent per held-out prompt.",
                                          range=Range(1, 64))
    gate_min_prompts: int = _field(8, "Fewer held-out prompts than this: the gate refuses.", range=Range(1, 100_000))
    gate_margin: float = _field(
        0.0, "The one-sided lower t bound of the held-out reward gain (candidate − parent) must exceed this.",
        range=Range(-1e6, 1e6))
    gate_bootstrap_resamples: int = _field(2000, "Unused since the gate's bound is a t bound (kept so old settings load).",
                                           range=Range(1, 100_000))
    gate_length_control: bool = _field(
        True, "Refuse when the reward gain may be explained by longer answers (reward regressed on length within "
              "each prompt and policy).")
    gate_alpha: float = _field(
        0.025, "The error budget of all of a project's gates together: the k-th gate on the same held-out prompts "
               "passes a candidate no better than its parent with probability at most gate_alpha·6/(π²k²).",
        range=Range(0.0, 0.5, lo_open=True))
    gate_look: int = _field(1, "Which gate on these held-out prompts this is (set by the runner from the project's "
                               "earlier gates; 1 = the first).", range=Range(1, 1_000_000))
    gate_independent_judge: bool = _field(
        True, "Whether a reward model the policy did not optimise judges the held-out answers (set by the runner); "
              "False: the gate's verdict is 'unjudged' and only people can promote the policy.")

    def _check_gate(self) -> None:  # called by each config's __post_init__, after check_ranges
        pass  # every gate setting is a number within its stated range: nothing more to check


# --- RewardConfig (owned by the reward-model work) --------------------------------------------


@dataclasses.dataclass
class RewardConfig:
    """Settings of `reward.train_reward_model` (a Bradley-Terry reward model through `trl.RewardTrainer`).

    Groups: the model (`backbone`, LoRA), the optimisation (learning rate, epochs/steps, batches), the data
    (`max_length`, margins, held-out split) and the evaluation. Defaults that differ from TRL's: bf16 and
    gradient checkpointing are always off (fp32 on CPU; bf16 is ~300x slower here), `center_rewards_coefficient`
    is 0.01 (TRL: None) so rewards stay near zero for PPO, `logging_steps` is 5 (TRL: 10).
    """

    # Model
    backbone: str = dataclasses.field(
        default="all-minilm-l6-v2",
        metadata={
            "help": "Local Hugging Face model directory to start from (an encoder such as MiniLM, a causal LM such "
            "as SmolLM2, or an earlier reward model). A bare name is looked up under $MODEL_DIR."
        },
    )
    verify_backbone: bool = dataclasses.field(
        default=True,
        metadata={"help": "Check the backbone against its manifest.json before loading (registry directories)."},
    )
    use_lora: bool = dataclasses.field(
        default=False,
        metadata={"help": "Train LoRA adapters (+ the whole reward head) instead of every weight; merged on save."},
    )
    lora_r: int = _field(16, "LoRA rank.", range=LORA_R)
    lora_alpha: int = _field(32, "LoRA scaling numerator (scale = alpha / r).", range=LORA_ALPHA)
    lora_dropout: float = _field(0.05, "Dropout on the LoRA branch.", range=DROPOUT)
    disable_dropout: bool = _field(True, "Turn the backbone's dropout off (TRL's default for reward models).")

    # Optimisation
    learning_rate: float = _field(1e-4, "Peak AdamW learning rate (LoRA usually wants ~1e-3).", range=LEARNING_RATE)
    num_train_epochs: float = _field(1.0, "Passes over the training pairs.", range=EPOCHS)
    max_steps: int = _field(-1, "If > 0: stop after this many optimiser steps (overrides num_train_epochs).",
                            range=OPTIONAL_STEPS)
    batch_size: int = _field(8, "Pairs per device per step (2x sequences).", range=BATCH)
    gradient_accumulation_steps: int = _field(1, "Batches accumulated per optimiser step.", range=ACCUMULATION)
    weight_decay: float = _field(0.0, "AdamW weight decay.", range=SHARE)
    warmup_steps: float = _field(0.0, "Linear warmup: a number of steps (>= 1) or a fraction of all steps (< 1).",
                                 range=Range(0.0, MAX_STEPS))
    lr_scheduler_type: str = _field("linear", "transformers scheduler name: linear, cosine, constant, ...")
    max_grad_norm: float = _field(1.0, "Gradient clipping norm.", range=GRAD_NORM)
    seed: int = _field(42, "Seed for the head's init, shuffling and the split.", range=SEED)

    # Data and loss
    max_length: int = _field(
        512, "Longest prompt+completion in tokens. TRL drops (does not truncate) longer pairs; they are counted in "
             "the metrics. Capped at the backbone's max_position_embeddings.", range=Range(8, MAX_PROMPT_TOKENS))
    use_margin: bool = _field(True, "Ask each pair for a reward gap in the loss, -logsigmoid(r_chosen - r_rejected - "
                              "margin), margin = consensus strength x judges' confidence x margin_scale (data.pair_margin).")
    margin_scale: float = _field(1.0, "The gap a unanimous, certain pair asks for (in reward units).",
                                 range=COEFFICIENT)
    center_rewards_coefficient: float | None = _field(
        0.01, "Weight of mean(r^2) in the loss, pulling rewards towards zero (None: off).", range=COEFFICIENT)

    # Evaluation and logging
    eval_batch_size: int = _field(16, "Sequences per scoring batch.", range=BATCH)
    calibration_bins: int = _field(10, "Bins of the expected calibration error of sigmoid(r_chosen - r_rejected).",
                                   range=Range(1, 1000))
    logging_steps: int = _field(5, "Call on_step every this many steps.", range=LOGGING_STEPS)
    processes: int = _field(1, PROCESSES_HELP, range=PROCESSES)
    accelerate_config: str | None = _field(None, ACCELERATE_CONFIG_HELP)

    def __post_init__(self):
        check_ranges(self)
        _check_launch(self)
        _require(self, isinstance(self.backbone, str) and self.backbone.strip() != "", "backbone",
                 "must be a path or name")
        _require(self, self.num_train_epochs > 0 or self.max_steps > 0, "num_train_epochs",
                 "must be > 0 unless max_steps > 0")
        _require(self, self.max_steps == -1 or self.max_steps > 0, "max_steps", "must be -1 (off) or > 0")
        if self.use_lora and self.learning_rate < 1e-4:
            warnings.warn(
                f"RewardConfig: learning_rate={self.learning_rate} is low for LoRA (try 1e-3)", stacklevel=3
            )


# --- PPOConfig and DPOConfig (owned by the policy-optimisation work) ---------------------------


@dataclasses.dataclass
class PPOTrainingSettings:
    """PPO's own settings: the policy (path, LoRA), the rollout, the objective (KL penalty, clip ranges, GAE), the
    optimisation (epochs × minibatches) and a safeguard. Sampling defaults match publishing's (temperature 0.8,
    top-p 0.95; 64 new tokens for CPU speed), and the ratio's log-probs use the same temperature and top-p."""

    # Policy
    policy: str = _field("smollm2-135m-instruct", "Registered policy directory (or a name under $MODEL_DIR).")
    verify_policy: bool = _field(True, "Check the policy against its manifest before loading.")
    use_lora: bool = _field(True, "Train LoRA adapters; the frozen reference is the base with adapters off (no copy).")
    lora_r: int = _field(16, "LoRA rank.", range=LORA_R)
    lora_alpha: int = _field(32, "LoRA scaling numerator.", range=LORA_ALPHA)
    lora_dropout: float = _field(
        0.0, "Dropout on the LoRA branch. Like all dropout it is active only in the updates (policy.train()); "
        "rollouts, old log-probs, the reference, values and the evaluation run in eval mode.", range=DROPOUT)
    # Rollout
    num_iterations: int = _field(4, "PPO iterations (rollout → update).", range=Range(1, 10_000))
    batch_size: int = _field(8, "Rollouts (prompt, response) per iteration.", range=BATCH)
    mini_batch_size: int = _field(4, "Rollouts per gradient step.", range=BATCH)
    ppo_epochs: int = _field(2, "Passes over each iteration's rollouts.", range=Range(1, 100))
    max_new_tokens: int = _field(64, "Longest response in tokens (publishing's default is 96; 64 for CPU speed).",
                                 range=NEW_TOKENS)
    temperature: float = _field(0.8, "Sampling temperature; the ratio's log-probs use the same one.", range=TEMPERATURE)
    top_p: float = _field(0.95, "Nucleus sampling; the ratio's log-probs use the same nucleus (HF's TopP rule).",
                          range=TOP_P)
    max_prompt_length: int = _field(256, "Prompts longer than this many tokens are dropped.", range=PROMPT_TOKENS)
    # Objective
    init_kl_coef: float = _field(0.05, "β of the per-token KL penalty against the reference.", range=COEFFICIENT)
    adaptive_kl: bool = _field(False, "Adapt β towards adaptive_kl_target (Ziegler et al.).")
    adaptive_kl_target: float = _field(
        6.0, "Target summed KL per response of the adaptive β controller (not an early stop, unlike CleanRL's "
        "target_kl).", range=POSITIVE)
    adaptive_kl_horizon_iterations: int = _field(
        10, "Horizon of the adaptive controller in iterations: horizon = this × batch_size rollouts and each update "
        "counts batch_size, so β moves at most 0.2/this (2% at 10) per iteration.", range=Range(1, 10_000))
    kl_estimator: str = _field("k1", "Per-token KL estimator: k1 (log ratio), k3 (unbiased, positive) or mse.")
    cliprange: float = _field(0.2, "PPO ratio clip ε (0.1–0.3 is the tested range; outside it warns).",
                              range=Range(0.0, 1.0, lo_open=True, hi_open=True))
    cliprange_value: float = _field(0.2, "Value clip around the old value estimates.", range=POSITIVE)
    vf_coef: float = _field(0.1, "Weight of the value loss.", range=COEFFICIENT)
    gamma: float = _field(1.0, "Discount.", range=SHARE)
    lam: float = _field(0.95, "GAE λ.", range=SHARE)
    whiten_rewards: bool = _field(False, "Whiten the per-token rewards before GAE.")
    missing_eos_penalty_std: float = _field(
        1.0, "Subtracted from the score of a response that never ends, in running std of the scores (so it "
        "scales with the reward model's spread).", range=COEFFICIENT)
    # Optimisation
    learning_rate: float = _field(1e-4, "AdamW learning rate (policy and value head).", range=LEARNING_RATE)
    max_grad_norm: float = _field(1.0, "Gradient clipping norm.", range=GRAD_NORM)
    seed: int = _field(0, "Seed for sampling, shuffling and the gate's bootstrap.", range=SEED)
    # Safeguards (the KL bounds are GateSettings')
    reward_collapse: float = _field(
        3.0, "Stop when a batch's mean reward falls this many std (of all scores so far) below the first batch's.",
            range=POSITIVE)


@dataclasses.dataclass
class PPOConfig(GateSettings, PPOTrainingSettings):
    """Settings of `ppo.train_ppo` (PPO for language models, after Ziegler et al. 2019 and CleanRL): PPO's own
    (`PPOTrainingSettings`), the gate and KL bounds it shares with RLOO and GRPO (`GateSettings`), the launch."""

    # Launch
    rollout_chunk: int = _field(
        4, "Under accelerate: prompts per generate() call. Each chunk's seed depends only on its place in the "
           "global batch, so a run samples the same answers on any number of processes when batch_size / "
           "processes is a multiple of it.", range=BATCH)
    processes: int = _field(1, PROCESSES_HELP, range=PROCESSES)
    accelerate_config: str | None = _field(None, ACCELERATE_CONFIG_HELP)

    def __post_init__(self):
        check_ranges(self)
        _check_launch(self)
        self._check_gate()
        _require(self, isinstance(self.policy, str) and self.policy.strip() != "", "policy", "must be a path or name")
        _require(self, self.mini_batch_size <= self.batch_size, "mini_batch_size", "must be <= batch_size")
        if not 0.1 <= self.cliprange <= 0.3:
            warnings.warn(f"PPOConfig.cliprange={self.cliprange} is outside the usual 0.1–0.3", stacklevel=3)
        _require(self, self.kl_estimator in {"k1", "k3", "mse"}, "kl_estimator", "must be k1, k3 or mse")


@dataclasses.dataclass
class DPOConfig:
    """Settings of `dpo.train_dpo` (Direct Preference Optimisation through `trl.DPOTrainer`).

    Changed defaults: bf16 and gradient checkpointing are always off (fp32 on the CPU), LoRA on, so the
    reference is the base model with adapters disabled.
    """

    policy: str = _field("smollm2-135m-instruct", "Registered policy directory (or a name under $MODEL_DIR).")
    verify_policy: bool = _field(True, "Check the policy against its manifest before loading.")
    use_lora: bool = _field(True, "Train LoRA adapters (merged before saving).")
    lora_r: int = _field(16, "LoRA rank.", range=LORA_R)
    lora_alpha: int = _field(32, "LoRA scaling numerator.", range=LORA_ALPHA)
    lora_dropout: float = _field(0.05, "Dropout on the LoRA branch.", range=DROPOUT)
    beta: float = _field(0.1, "DPO β: strength of the implicit KL constraint to the reference.", range=POSITIVE)
    loss_type: str = _field("sigmoid", "TRL loss type: sigmoid (DPO), ipo, hinge, …")
    learning_rate: float = _field(5e-5, "AdamW learning rate.", range=LEARNING_RATE)
    num_train_epochs: float = _field(1.0, "Passes over the training pairs.", range=EPOCHS)
    max_steps: int = _field(-1, "If > 0: stop after this many optimiser steps.", range=OPTIONAL_STEPS)
    batch_size: int = _field(4, "Pairs per step.", range=BATCH)
    gradient_accumulation_steps: int = _field(1, "Batches accumulated per step.", range=ACCUMULATION)
    max_length: int = _field(512, "Longest prompt + completion in tokens.", range=Range(16, MAX_PROMPT_TOKENS))
    logging_steps: int = _field(1, "Report metrics every this many steps.", range=LOGGING_STEPS)
    seed: int = _field(0, "Seed.", range=SEED)
    processes: int = _field(1, PROCESSES_HELP, range=PROCESSES)
    accelerate_config: str | None = _field(None, ACCELERATE_CONFIG_HELP)

    def __post_init__(self):
        check_ranges(self)
        _check_launch(self)
        _require(self, isinstance(self.policy, str) and self.policy.strip() != "", "policy", "must be a path or name")
        _require(self, self.num_train_epochs > 0 or self.max_steps > 0, "num_train_epochs",
                 "must be > 0 unless max_steps > 0")
        _require(self, self.max_steps == -1 or self.max_steps > 0, "max_steps", "must be -1 (off) or > 0")
