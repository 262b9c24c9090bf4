"""Settings of `ppo.loop.train_ppo` (TRL style: a default, a `help` and, for a number, a `range` per field; see
`pipeline.fields`), and the gate and KL bounds PPO shares with RLOO and GRPO (`GateSettings`)."""

from __future__ import annotations

import dataclasses
import warnings

from ..fields import (
    ACCELERATE_CONFIG_HELP, BATCH, COEFFICIENT, DROPOUT, GRAD_NORM, LEARNING_RATE, LORA_ALPHA, LORA_R, NEW_TOKENS,
    POSITIVE, PROCESSES, PROCESSES_HELP, PROMPT_TOKENS, SEED, SHARE, TEMPERATURE, TOP_P, Range, check_launch,
    check_ranges, field, require,
)


@dataclasses.dataclass
class GateSettings:
    """The held-out gate (gate.py, `report.conclude`) and KL bounds shared by PPO, RLOO and GRPO. A mixin listed
    before the config's training settings (`PPOConfig(GateSettings, PPOTrainingSettings)`): dataclasses put the last
    base's fields first, so these come after the training ones and before the config's own (the launch)."""

    kl_bound: float = field(20.0, "Publish nothing (PPO: also stop training) when the mean summed KL per answer to "
                                   "the reference exceeds this.", range=POSITIVE)
    kl_base_bound: float | None = field(
        60.0, "Publish nothing (PPO: also stop training) when the mean summed KL per answer to the lineage's ORIGINAL "
              "base exceeds this: each run's reference is its parent, so drift would add up across retrains. None: off.",
        range=POSITIVE)
    gate_samples_per_prompt: int = field(4, "Samples of the candidate and of the parent per held-out prompt.",
                                         range=Range(1, 64))
    gate_min_prompts: int = field(8, "Fewer held-out prompts than this: the gate refuses.", range=Range(1, 100_000))
    gate_margin: float = field(
        0.0, "The one-sided lower t bound of the held-out reward gain (candidate − parent) must exceed this.",
        range=Range(-1e6, 1e6))
    gate_bootstrap_resamples: int = field(2000, "Unused since the gate's bound is a t bound (kept so old settings load).",
                                          range=Range(1, 100_000))
    gate_length_control: bool = field(
        True, "Refuse when the reward gain may be explained by longer answers (reward regressed on length within "
              "each prompt and policy).")
    gate_alpha: float = field(
        0.025, "The error budget of all of a project's gates together: the k-th gate on the same held-out prompts "
               "passes a candidate no better than its parent with probability at most gate_alpha·6/(π²k²).",
        range=Range(0.0, 0.5, lo_open=True))
    gate_look: int = field(1, "Which gate on these held-out prompts this is (set by the runner from the project's "
                               "earlier gates; 1 = the first).", range=Range(1, 1_000_000))
    gate_independent_judge: bool = field(
        True, "Whether a reward model the policy did not optimise judges the held-out answers (set by the runner); "
              "False: the gate's verdict is 'unjudged' and only people can promote the policy.")

    def _check_gate(self) -> None:  # called by each config's __post_init__, after check_ranges
        pass  # every gate setting is a number within its stated range: nothing more to check


@dataclasses.dataclass
class PPOTrainingSettings:
    """PPO's own settings: the policy (path, LoRA), the rollout, the objective (KL penalty, clip ranges, GAE), the
    optimisation (epochs × minibatches) and a safeguard. Sampling defaults match publishing's (temperature 0.8,
    top-p 0.95; 64 new tokens for CPU speed), and the ratio's log-probs use the same temperature and top-p."""

    # Policy
    policy: str = field("smollm2-135m-instruct", "Registered policy directory (or a name under $MODEL_DIR).")
    verify_policy: bool = field(True, "Check the policy against its manifest before loading.")
    use_lora: bool = field(True, "Train LoRA adapters; the frozen reference is the base with adapters off (no copy).")
    lora_r: int = field(16, "LoRA rank.", range=LORA_R)
    lora_alpha: int = field(32, "LoRA scaling numerator.", range=LORA_ALPHA)
    lora_dropout: float = field(
        0.0, "Dropout on the LoRA branch. Like all dropout it is active only in the updates (policy.train()); "
        "rollouts, old log-probs, the reference, values and the evaluation run in eval mode.", range=DROPOUT)
    # Rollout
    num_iterations: int = field(4, "PPO iterations (rollout → update).", range=Range(1, 10_000))
    batch_size: int = field(8, "Rollouts (prompt, response) per iteration.", range=BATCH)
    mini_batch_size: int = field(4, "Rollouts per gradient step.", range=BATCH)
    ppo_epochs: int = field(2, "Passes over each iteration's rollouts.", range=Range(1, 100))
    max_new_tokens: int = field(64, "Longest response in tokens (publishing's default is 96; 64 for CPU speed).",
                                range=NEW_TOKENS)
    temperature: float = field(0.8, "Sampling temperature; the ratio's log-probs use the same one.", range=TEMPERATURE)
    top_p: float = field(0.95, "Nucleus sampling; the ratio's log-probs use the same nucleus (HF's TopP rule).",
                         range=TOP_P)
    max_prompt_length: int = field(256, "Prompts longer than this many tokens are dropped.", range=PROMPT_TOKENS)
    # Objective
    init_kl_coef: float = field(0.05, "β of the per-token KL penalty against the reference.", range=COEFFICIENT)
    adaptive_kl: bool = field(False, "Adapt β towards adaptive_kl_target (Ziegler et al.).")
    adaptive_kl_target: float = field(
        6.0, "Target summed KL per response of the adaptive β controller (not an early stop, unlike CleanRL's "
        "target_kl).", range=POSITIVE)
    adaptive_kl_horizon_iterations: int = field(
        10, "Horizon of the adaptive controller in iterations: horizon = this × batch_size rollouts and each update "
        "counts batch_size, so β moves at most 0.2/this (2% at 10) per iteration.", range=Range(1, 10_000))
    kl_estimator: str = field("k1", "Per-token KL estimator: k1 (log ratio), k3 (unbiased, positive) or mse.")
    cliprange: float = field(0.2, "PPO ratio clip ε (0.1–0.3 is the tested range; outside it warns).",
                             range=Range(0.0, 1.0, lo_open=True, hi_open=True))
    cliprange_value: float = field(0.2, "Value clip around the old value estimates.", range=POSITIVE)
    vf_coef: float = field(0.1, "Weight of the value loss.", range=COEFFICIENT)
    gamma: float = field(1.0, "Discount.", range=SHARE)
    lam: float = field(0.95, "GAE λ.", range=SHARE)
    whiten_rewards: bool = field(False, "Whiten the per-token rewards before GAE.")
    missing_eos_penalty_std: float = field(
        1.0, "Subtracted from the score of a response that never ends, in running std of the scores (so it "
        "scales with the reward model's spread).", range=COEFFICIENT)
    # Optimisation
    learning_rate: float = field(1e-4, "AdamW learning rate (policy and value head).", range=LEARNING_RATE)
    max_grad_norm: float = field(1.0, "Gradient clipping norm.", range=GRAD_NORM)
    seed: int = field(0, "Seed for sampling, shuffling and the gate's bootstrap.", range=SEED)
    # Safeguards (the KL bounds are GateSettings')
    reward_collapse: float = field(
        3.0, "Stop when a batch's mean reward falls this many std (of all scores so far) below the first batch's.",
            range=POSITIVE)


@dataclasses.dataclass
class PPOConfig(GateSettings, PPOTrainingSettings):
    """Settings of `loop.train_ppo` (PPO for language models, after Ziegler et al. 2019 and CleanRL): PPO's own
    (`PPOTrainingSettings`), the gate and KL bounds it shares with RLOO and GRPO (`GateSettings`), the launch."""

    # Launch
    rollout_chunk: int = field(
        4, "Under accelerate: prompts per generate() call. Each chunk's seed depends only on its place in the "
           "global batch, so a run samples the same answers on any number of processes when batch_size / "
           "processes is a multiple of it.", range=BATCH)
    processes: int = field(1, PROCESSES_HELP, range=PROCESSES)
    accelerate_config: str | None = field(None, ACCELERATE_CONFIG_HELP)

    def __post_init__(self):
        check_ranges(self)
        check_launch(self)
        self._check_gate()
        require(self, isinstance(self.policy, str) and self.policy.strip() != "", "policy", "must be a path or name")
        require(self, self.mini_batch_size <= self.batch_size, "mini_batch_size", "must be <= batch_size")
        if not 0.1 <= self.cliprange <= 0.3:
            warnings.warn(f"PPOConfig.cliprange={self.cliprange} is outside the usual 0.1–0.3", stacklevel=3)
        require(self, self.kl_estimator in {"k1", "k3", "mse"}, "kl_estimator", "must be k1, k3 or mse")
