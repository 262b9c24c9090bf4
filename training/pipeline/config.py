"""One dataclass per trainer, TRL style: a default and a `help` for every field, checks in
`__post_init__` (`_require`: a ValueError naming the field), `asdict(cfg)` stored on the TrainingRun,
loadable from YAML, the CLI or a dict through `config_from_dict`, which refuses unknown keys and parses
each value to its field's declared type ("3e-4" from YAML or a command line becomes the float 3e-4).
"""

from __future__ import annotations

import dataclasses
import math
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


def _field(default, help_text: str, **kwargs):
    return dataclasses.field(default=default, metadata={"help": help_text}, **kwargs)


def _require(cfg, condition: bool, field_name: str, rule: str) -> None:
    if not condition:
        raise ValueError(f"{type(cfg).__name__}.{field_name} {rule}, got {getattr(cfg, field_name)!r}")


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
        number = float(value.strip()) if isinstance(value, str) else value
        if isinstance(number, float) and math.isfinite(number) and number.is_integer():
            return int(number)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
    elif kind is str:
        if isinstance(value, (str, Path)):
            return str(value)
    elif kind in (dict, list):  # structured settings (e.g. a chain's per-step settings) pass as they are
        if isinstance(value, kind):
            return value
    else:
        raise TypeError(f"unsupported config field type {kind!r}")
    raise ValueError(f"not a {kind.__name__}")


def parse_field_value(cls: type, name: str, value: Any) -> Any:
    """Parse one setting of config class `cls` to its declared type; ValueError naming `cls.name` otherwise."""
    declared = typing.get_type_hints(cls)[name]
    options = typing.get_args(declared) if isinstance(declared, types.UnionType) else (declared,)
    kinds = [kind for kind in options if kind is not type(None)]
    if type(None) in options and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    for kind in kinds:
        try:
            return _parse_scalar(value, kind)
        except ValueError:
            continue
    expected = " or ".join([k.__name__ for k in kinds] + (["None"] if type(None) in options else []))
    raise ValueError(f"{cls.__name__}.{name} must be {expected}, got {value!r}")


def config_from_dict(cls: type[T], values: dict[str, Any] | None) -> T:
    """Build a config dataclass from a plain dict (YAML, CLI, a stored run): unknown keys are refused by name,
    and each value is parsed to its field's declared type (ValueError naming the field when it cannot be)."""
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
PROCESSES_HELP = ("Processes `accelerate launch` starts for this run (DDP; 1: the worker trains in its own process, "
                  "as before). Each PPO process samples and scores its share of every batch.")
ACCELERATE_CONFIG_HELP = ("An accelerate config file (DeepSpeed ZeRO, FSDP, several machines) by its bare file name "
                          "under $MODEL_DIR/accelerate/; blank: plain DDP on this machine. Launches even with 1 process.")


def _check_launch(cfg) -> None:
    _require(cfg, 1 <= cfg.processes <= MAX_PROCESSES, "processes", f"must be in 1..{MAX_PROCESSES}")
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
                                   "the reference exceeds this.")
    kl_base_bound: float | None = _field(
        60.0, "Publish nothing (PPO: also stop training) when the mean summed KL per answer to the lineage's ORIGINAL "
              "base exceeds this: each run's reference is its parent, so drift would add up across retrains. None: off.")
    gate_samples_per_prompt: int = _field(4, "Samples of the candidate and of the parent per held-out prompt.")
    gate_min_prompts: int = _field(8, "Fewer held-out prompts than this: the gate refuses.")
    gate_margin: float = _field(
        0.0, "The 95% bootstrap lower bound of the held-out reward gain (candidate − parent) must exceed this.")
    gate_bootstrap_resamples: int = _field(2000, "Bootstrap resamples of the held-out prompts.")
    gate_length_control: bool = _field(
        True, "Refuse when the reward gain is explained by longer answers (reward regressed on length).")

    def _check_gate(self) -> None:  # called by each config's __post_init__
        for name in ("gate_samples_per_prompt", "gate_min_prompts", "gate_bootstrap_resamples"):
            _require(self, getattr(self, name) >= 1, name, "must be >= 1")
        _require(self, self.kl_bound > 0, "kl_bound", "must be > 0")
        _require(self, self.kl_base_bound is None or self.kl_base_bound > 0, "kl_base_bound", "must be > 0 or None")


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
    lora_r: int = dataclasses.field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = dataclasses.field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = dataclasses.field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    disable_dropout: bool = dataclasses.field(
        default=True, metadata={"help": "Turn the backbone's dropout off (TRL's default for reward models)."}
    )

    # Optimisation
    learning_rate: float = dataclasses.field(
        default=1e-4, metadata={"help": "Peak AdamW learning rate (LoRA usually wants ~1e-3)."}
    )
    num_train_epochs: float = dataclasses.field(default=1.0, metadata={"help": "Passes over the training pairs."})
    max_steps: int = dataclasses.field(
        default=-1, metadata={"help": "If > 0: stop after this many optimiser steps (overrides num_train_epochs)."}
    )
    batch_size: int = dataclasses.field(default=8, metadata={"help": "Pairs per device per step (2x sequences)."})
    gradient_accumulation_steps: int = dataclasses.field(
        default=1, metadata={"help": "Batches accumulated per optimiser step."}
    )
    weight_decay: float = dataclasses.field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = dataclasses.field(
        default=0.0, metadata={"help": "Linear warmup: a number of steps (>= 1) or a fraction of all steps (< 1)."}
    )
    lr_scheduler_type: str = dataclasses.field(
        default="linear", metadata={"help": "transformers scheduler name: linear, cosine, constant, ..."}
    )
    max_grad_norm: float = dataclasses.field(default=1.0, metadata={"help": "Gradient clipping norm."})
    seed: int = dataclasses.field(default=42, metadata={"help": "Seed for the head's init, shuffling and the split."})

    # Data and loss
    max_length: int = dataclasses.field(
        default=512,
        metadata={
            "help": "Longest prompt+completion in tokens. TRL drops (does not truncate) longer pairs; they are "
            "counted in the metrics. Capped at the backbone's max_position_embeddings."
        },
    )
    use_margin: bool = _field(True, "Ask each pair for a reward gap in the loss, -logsigmoid(r_chosen - r_rejected - "
                              "margin), margin = consensus strength x judges' confidence x margin_scale (data.pair_margin).")
    margin_scale: float = _field(1.0, "The gap a unanimous, certain pair asks for (in reward units).")
    center_rewards_coefficient: float | None = dataclasses.field(
        default=0.01,
        metadata={"help": "Weight of mean(r^2) in the loss, pulling rewards towards zero (None: off)."},
    )

    # Evaluation and logging
    eval_batch_size: int = dataclasses.field(default=16, metadata={"help": "Sequences per scoring batch."})
    calibration_bins: int = dataclasses.field(
        default=10, metadata={"help": "Bins of the expected calibration error of sigmoid(r_chosen - r_rejected)."}
    )
    logging_steps: int = dataclasses.field(default=5, metadata={"help": "Call on_step every this many steps."})
    processes: int = _field(1, PROCESSES_HELP)
    accelerate_config: str | None = _field(None, ACCELERATE_CONFIG_HELP)

    def __post_init__(self):
        _check_launch(self)
        _require(self, isinstance(self.backbone, str) and self.backbone.strip() != "", "backbone",
                 "must be a path or name")
        _require(self, self.lora_r >= 1, "lora_r", "must be >= 1")
        _require(self, self.lora_alpha > 0, "lora_alpha", "must be > 0")
        _require(self, 0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        _require(self, self.learning_rate > 0, "learning_rate", "must be > 0")
        _require(self, self.num_train_epochs > 0 or self.max_steps > 0, "num_train_epochs",
                 "must be > 0 unless max_steps > 0")
        _require(self, self.max_steps == -1 or self.max_steps > 0, "max_steps", "must be -1 (off) or > 0")
        _require(self, self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(self, self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps", "must be >= 1")
        _require(self, self.weight_decay >= 0, "weight_decay", "must be >= 0")
        _require(self, self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        _require(self, self.max_grad_norm > 0, "max_grad_norm", "must be > 0")
        _require(self, self.max_length >= 8, "max_length", "must be >= 8 tokens")
        _require(self, self.margin_scale >= 0, "margin_scale", "must be >= 0")
        _require(self, self.center_rewards_coefficient is None or self.center_rewards_coefficient >= 0,
                 "center_rewards_coefficient", "must be None or >= 0")
        _require(self, self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        _require(self, self.calibration_bins >= 1, "calibration_bins", "must be >= 1")
        _require(self, self.logging_steps >= 1, "logging_steps", "must be >= 1")
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
    lora_r: int = _field(16, "LoRA rank.")
    lora_alpha: int = _field(32, "LoRA scaling numerator.")
    lora_dropout: float = _field(
        0.0, "Dropout on the LoRA branch. Like all dropout it is active only in the updates (policy.train()); "
        "rollouts, old log-probs, the reference, values and the evaluation run in eval mode.")
    # Rollout
    num_iterations: int = _field(4, "PPO iterations (rollout → update).")
    batch_size: int = _field(8, "Rollouts (prompt, response) per iteration.")
    mini_batch_size: int = _field(4, "Rollouts per gradient step.")
    ppo_epochs: int = _field(2, "Passes over each iteration's rollouts.")
    max_new_tokens: int = _field(64, "Longest response in tokens (publishing's default is 96; 64 for CPU speed).")
    temperature: float = _field(0.8, "Sampling temperature; the ratio's log-probs use the same one.")
    top_p: float = _field(0.95, "Nucleus sampling; the ratio's log-probs use the same nucleus (HF's TopP rule).")
    max_prompt_length: int = _field(256, "Prompts longer than this many tokens are dropped.")
    # Objective
    init_kl_coef: float = _field(0.05, "β of the per-token KL penalty against the reference.")
    adaptive_kl: bool = _field(False, "Adapt β towards adaptive_kl_target (Ziegler et al.).")
    adaptive_kl_target: float = _field(
        6.0, "Target summed KL per response of the adaptive β controller (not an early stop, unlike CleanRL's "
        "target_kl).")
    adaptive_kl_horizon_iterations: int = _field(
        10, "Horizon of the adaptive controller in iterations: horizon = this × batch_size rollouts and each update "
        "counts batch_size, so β moves at most 0.2/this (2% at 10) per iteration.")
    kl_estimator: str = _field("k1", "Per-token KL estimator: k1 (log ratio), k3 (unbiased, positive) or mse.")
    cliprange: float = _field(0.2, "PPO ratio clip ε (0.1–0.3 is the tested range; outside it warns).")
    cliprange_value: float = _field(0.2, "Value clip around the old value estimates.")
    vf_coef: float = _field(0.1, "Weight of the value loss.")
    gamma: float = _field(1.0, "Discount.")
    lam: float = _field(0.95, "GAE λ.")
    whiten_rewards: bool = _field(False, "Whiten the per-token rewards before GAE.")
    missing_eos_penalty_std: float = _field(
        1.0, "Subtracted from the score of a response that never ends, in running std of the scores (so it "
        "scales with the reward model's spread).")
    # Optimisation
    learning_rate: float = _field(1e-4, "AdamW learning rate (policy and value head).")
    max_grad_norm: float = _field(1.0, "Gradient clipping norm.")
    seed: int = _field(0, "Seed for sampling, shuffling and the gate's bootstrap.")
    # Safeguards (the KL bounds are GateSettings')
    reward_collapse: float = _field(
        3.0, "Stop when a batch's mean reward falls this many std (of all scores so far) below the first batch's.")


@dataclasses.dataclass
class PPOConfig(GateSettings, PPOTrainingSettings):
    """Settings of `ppo.train_ppo` (PPO for language models, after Ziegler et al. 2019 and CleanRL): PPO's own
    (`PPOTrainingSettings`), the gate and KL bounds it shares with RLOO and GRPO (`GateSettings`), the launch."""

    # Launch
    rollout_chunk: int = _field(
        4, "Under accelerate: prompts per generate() call. Each chunk's seed depends only on its place in the "
           "global batch, so a run samples the same answers on any number of processes when batch_size / "
           "processes is a multiple of it.")
    processes: int = _field(1, PROCESSES_HELP)
    accelerate_config: str | None = _field(None, ACCELERATE_CONFIG_HELP)

    def __post_init__(self):
        _check_launch(self)
        self._check_gate()
        _require(self, isinstance(self.policy, str) and self.policy.strip() != "", "policy", "must be a path or name")
        for name in ("num_iterations", "batch_size", "mini_batch_size", "ppo_epochs", "max_new_tokens", "lora_r",
                     "adaptive_kl_horizon_iterations", "rollout_chunk"):
            _require(self, getattr(self, name) >= 1, name, "must be >= 1")
        _require(self, self.mini_batch_size <= self.batch_size, "mini_batch_size", "must be <= batch_size")
        _require(self, 0.0 < self.cliprange < 1.0, "cliprange", "must be in (0, 1)")
        if not 0.1 <= self.cliprange <= 0.3:
            warnings.warn(f"PPOConfig.cliprange={self.cliprange} is outside the usual 0.1–0.3", stacklevel=3)
        _require(self, self.cliprange_value > 0, "cliprange_value", "must be > 0")
        _require(self, self.temperature > 0, "temperature", "must be > 0")
        _require(self, 0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]")
        _require(self, self.init_kl_coef >= 0, "init_kl_coef", "must be >= 0")
        _require(self, self.kl_estimator in {"k1", "k3", "mse"}, "kl_estimator", "must be k1, k3 or mse")
        _require(self, 0.0 <= self.gamma <= 1.0, "gamma", "must be in [0, 1]")
        _require(self, 0.0 <= self.lam <= 1.0, "lam", "must be in [0, 1]")
        _require(self, self.learning_rate > 0, "learning_rate", "must be > 0")
        _require(self, self.lora_alpha > 0, "lora_alpha", "must be > 0")
        _require(self, 0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        _require(self, self.max_prompt_length >= 1, "max_prompt_length", "must be >= 1")
        _require(self, self.adaptive_kl_target > 0, "adaptive_kl_target", "must be > 0")
        _require(self, self.vf_coef >= 0, "vf_coef", "must be >= 0")
        _require(self, self.missing_eos_penalty_std >= 0, "missing_eos_penalty_std", "must be >= 0")
        _require(self, self.max_grad_norm > 0, "max_grad_norm", "must be > 0")
        _require(self, self.reward_collapse > 0, "reward_collapse", "must be > 0")


@dataclasses.dataclass
class DPOConfig:
    """Settings of `dpo.train_dpo` (Direct Preference Optimisation through `trl.DPOTrainer`).

    Changed defaults: bf16 and gradient checkpointing are always off (fp32 on the CPU), LoRA on, so the
    reference is the base model with adapters disabled.
    """

    policy: str = _field("smollm2-135m-instruct", "Registered policy directory (or a name under $MODEL_DIR).")
    verify_policy: bool = _field(True, "Check the policy against its manifest before loading.")
    use_lora: bool = _field(True, "Train LoRA adapters (merged before saving).")
    lora_r: int = _field(16, "LoRA rank.")
    lora_alpha: int = _field(32, "LoRA scaling numerator.")
    lora_dropout: float = _field(0.05, "Dropout on the LoRA branch.")
    beta: float = _field(0.1, "DPO β: strength of the implicit KL constraint to the reference.")
    loss_type: str = _field("sigmoid", "TRL loss type: sigmoid (DPO), ipo, hinge, …")
    learning_rate: float = _field(5e-5, "AdamW learning rate.")
    num_train_epochs: float = _field(1.0, "Passes over the training pairs.")
    max_steps: int = _field(-1, "If > 0: stop after this many optimiser steps.")
    batch_size: int = _field(4, "Pairs per step.")
    gradient_accumulation_steps: int = _field(1, "Batches accumulated per step.")
    max_length: int = _field(512, "Longest prompt + completion in tokens.")
    logging_steps: int = _field(1, "Report metrics every this many steps.")
    seed: int = _field(0, "Seed.")
    processes: int = _field(1, PROCESSES_HELP)
    accelerate_config: str | None = _field(None, ACCELERATE_CONFIG_HELP)

    def __post_init__(self):
        _check_launch(self)
        _require(self, isinstance(self.policy, str) and self.policy.strip() != "", "policy", "must be a path or name")
        _require(self, self.beta > 0, "beta", "must be > 0")
        _require(self, self.learning_rate > 0, "learning_rate", "must be > 0")
        _require(self, self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(self, self.max_length >= 16, "max_length", "must be >= 16")
        _require(self, self.lora_r >= 1, "lora_r", "must be >= 1")
        _require(self, self.lora_alpha > 0, "lora_alpha", "must be > 0")
        _require(self, 0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        _require(self, self.num_train_epochs > 0 or self.max_steps > 0, "num_train_epochs",
                 "must be > 0 unless max_steps > 0")
        _require(self, self.max_steps == -1 or self.max_steps > 0, "max_steps", "must be -1 (off) or > 0")
        _require(self, self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps", "must be >= 1")
        _require(self, self.logging_steps >= 1, "logging_steps", "must be >= 1")
