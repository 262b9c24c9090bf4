"""RLOO and GRPO, the online alternatives to PPO, through `trl.RLOOTrainer` and `trl.GRPOTrainer` (fp32 on the CPU).

    prompts ─▶ the held-out prompts answered by the parent (the gate's "before")
            ─▶ TRL samples `num_generations` completions per prompt ─▶ the reward function on strings (the project's
               reward model re-tokenises the decoded completion, as PPO and scoring do) ─▶ group baseline
               (RLOO: leave-one-out mean; GRPO: the group's mean and std) ─▶ clipped policy loss + β·KL to the reference
            ─▶ the held-out prompts answered by the candidate ─▶ the same gate as PPO (`ppo.report.conclude`: paired
               bootstrap against the parent judged by the held-out judge, length control, KL bounds)

No value model: the result is a `PPOResult` without a value head, saved by `ppo.save.save_policy`, so the runner,
the gate and the registry treat all three methods alike. With LoRA the reference is the policy with its
adapters disabled (TRL does the same during training). A non-finite reward stops the run before any update uses
it (status "nan"); weights that are not finite after training are never published.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..callbacks import OnStep, ShouldStop, TrainingCancelled, progress_callback, quiet_progress_bars
from ..data import TextOrMessages, prompt_dataset
from ..devices import PROCESS_GROUP_HOURS, is_main_process, world_size
from ..models import lora_config
from ..ppo.loop import evaluate
from ..ppo.state import Callbacks, Models, Prompts, RewardFn
from ..ppo.report import PPOResult, conclude
from .config import GRPOConfig, OnlineConfig, RLOOConfig

METHODS = ("rloo", "grpo")


class NonFiniteReward(Exception):
    pass


@dataclass
class Evaluator:
    """What `ppo.loop.evaluate` reads to answer the held-out prompts: PPO's `Models`, `Prompts` and `Callbacks`."""

    cfg: OnlineConfig
    models: Models
    prompts: Prompts
    callbacks: Callbacks

    @property
    def device(self) -> torch.device:
        """Where held-out batches go: wherever TRL's trainer left the policy."""
        return next(self.models.policy.parameters()).device

    def poll(self, step: int, what: str) -> None:
        should_stop = self.callbacks.should_stop
        if should_stop is not None and should_stop():
            raise TrainingCancelled(step, what.replace("PPO", "held-out evaluation"))


def completion_text(completion: TextOrMessages) -> str:
    """TRL passes a completion as text, or (conversational prompts) as [{"role": "assistant", "content": …}]; the
    reward function sees it stripped, as PPO's and publishing's samples are (`sampling.generate.sample_ids`)."""
    text = completion if isinstance(completion, str) else "".join(m.get("content", "") for m in completion)
    return text.strip()


def trl_reward(reward_fn: RewardFn, originals: Sequence[TextOrMessages]):
    """`reward_fn(prompts, completions)` as a TRL reward function: the original prompts (looked up by the
    dataset's `prompt_index` column) and the decoded completions as strings. NonFiniteReward on NaN/inf."""

    def reward_model(prompts, completions, prompt_index, **kwargs) -> list[float]:
        scores = [float(x) for x in reward_fn([originals[i] for i in prompt_index],
                                              [completion_text(c) for c in completions])]
        if len(scores) != len(completions):
            raise ValueError(f"reward_fn returned {len(scores)} scores for {len(completions)} completions")
        if not all(torch.isfinite(torch.tensor(scores))):
            raise NonFiniteReward(f"the reward function returned a non-finite score ({scores})")
        return scores

    return reward_model


def per_process_batch(cfg: OnlineConfig, processes: int) -> int:
    """`batch_size` is the global batch: under `accelerate launch` each process takes an equal share of it."""
    if cfg.batch_size % processes:
        raise ValueError(f"{type(cfg).__name__}.batch_size must be a multiple of the {processes} processes, "
                         f"got {cfg.batch_size}")
    return cfg.batch_size // processes


def trl_args(method: str, cfg: OnlineConfig, output_dir: str):
    import trl

    common = dict(
        output_dir=output_dir, bf16=False, fp16=False, gradient_checkpointing=False, report_to=[], push_to_hub=False,
        save_strategy="no", eval_strategy="no", logging_strategy="steps", logging_steps=cfg.logging_steps,
        disable_tqdm=True, learning_rate=cfg.learning_rate, max_steps=cfg.max_steps,
        per_device_train_batch_size=per_process_batch(cfg, world_size()),
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        seed=cfg.seed, num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature, top_p=cfg.top_p, beta=cfg.beta, num_iterations=cfg.num_iterations,
        epsilon=cfg.epsilon, max_grad_norm=cfg.max_grad_norm, disable_dropout=True, log_completions=False,
        dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(),
        ddp_timeout=PROCESS_GROUP_HOURS * 3600,
    )
    if method == "rloo":
        return trl.RLOOConfig(**common, normalize_advantages=cfg.normalize_advantages)
    return trl.GRPOConfig(**common, loss_type=cfg.loss_type,
                          scale_rewards=False if cfg.scale_rewards == "none" else cfg.scale_rewards)


def setup(cfg: OnlineConfig, policy, tokenizer, reward_fn, train_prompts, eval_prompts, *, held_out_judge, ref_model,
          base_model, should_stop) -> tuple[Evaluator, Any]:
    """LoRA (wrapped here, so the gate's reference is the policy with adapters off from the start), the frozen
    reference without LoRA, the prompt datasets; returns the evaluator and TRL's training dataset."""
    torch.manual_seed(cfg.seed)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    reference = ref_model
    if cfg.use_lora:
        from peft import get_peft_model

        policy = get_peft_model(policy, lora_config(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout))
    elif reference is None:
        reference = copy.deepcopy(policy)
    for frozen in (reference, base_model):
        if frozen is not None:
            frozen.eval().requires_grad_(False)
    policy.eval()
    train_set = prompt_dataset(list(train_prompts), tokenizer, max_prompt_length=cfg.max_prompt_length)
    eval_set = prompt_dataset(list(eval_prompts), tokenizer, max_prompt_length=cfg.max_prompt_length)
    if len(train_set) == 0:
        raise ValueError("no training prompt fits max_prompt_length")
    evaluator = Evaluator(
        cfg=cfg, models=Models(policy=policy, tokenizer=tokenizer, reference=reference, base_model=base_model),
        prompts=Prompts(eval_queries=list(eval_set["input_ids"]),
                        eval_texts=[eval_prompts[i] for i in eval_set["prompt_index"]]),
        callbacks=Callbacks(reward_fn=reward_fn, judge=held_out_judge or reward_fn, should_stop=should_stop))
    return evaluator, train_set.remove_columns("input_ids")


def fit(method: str, cfg: OnlineConfig, e: Evaluator, train_set, train_prompts, callback) -> int:
    """Run TRL's trainer on the (already LoRA-wrapped) policy in place; returns the optimiser steps taken."""
    import trl
    from transformers import PrinterCallback

    trainer_class = trl.RLOOTrainer if method == "rloo" else trl.GRPOTrainer
    with quiet_progress_bars(), tempfile.TemporaryDirectory(prefix=f"{method}-trainer-") as scratch:
        trainer = trainer_class(model=e.models.policy, reward_funcs=[trl_reward(e.callbacks.reward_fn, train_prompts)],
                                args=trl_args(method, cfg, scratch), train_dataset=train_set,
                                processing_class=e.models.tokenizer, callbacks=[callback])
        trainer.remove_callback(PrinterCallback)
        try:
            trainer.train()
        finally:
            e.models.policy.eval()
    return trainer.state.global_step


def train_online(
    method: str, cfg: OnlineConfig, policy, tokenizer, reward_fn: RewardFn, train_prompts: Sequence[TextOrMessages],
    eval_prompts: Sequence[TextOrMessages], *, on_step: OnStep | None = None, should_stop: ShouldStop | None = None,
    held_out_judge: RewardFn | None = None, ref_model=None, base_model=None,
    should_stop_training: ShouldStop | None = None,
) -> PPOResult:
    """Optimise `policy` against `reward_fn` with RLOO or GRPO (`method`), then judge it like PPO.

    reward_fn(prompts, completions) and held_out_judge(prompts, completions) -> one float per completion, prompts
    as given (text or chat messages), completions as decoded strings. on_step(step, metrics) with TRL's logged
    metrics (reward, kl, completions/mean_length, …); should_stop() polled after every step and between held-out
    sampling chunks: status "cancelled". ref_model/base_model as in `ppo.loop.train_ppo`.

    Under `accelerate launch` every process calls this: TRL's trainer shares each batch among them, and the
    held-out evaluation and the gate run on the main process alone (the others' results are not used).
    should_stop_training, when given, replaces should_stop after training steps: there it must answer the
    same on every process at once (`launch.Reporter.should_stop_together`), while the evaluation polls
    should_stop on the main process alone.
    """
    if method not in METHODS:
        raise ValueError(f"unknown online method {method!r}; use one of {', '.join(METHODS)}")
    e, train_set = setup(cfg, policy, tokenizer, reward_fn, list(train_prompts), list(eval_prompts),
                         held_out_judge=held_out_judge, ref_model=ref_model, base_model=base_model,
                         should_stop=should_stop)
    result = PPOResult(model=e.models.policy, value_head=None, status="completed")
    callback = progress_callback(on_step, should_stop_training or should_stop, result.history)
    evaluates = bool(e.prompts.eval_queries) and is_main_process()
    try:
        result.eval_before = evaluate(e, e.models.policy) if evaluates else None
        steps = fit(method, cfg, e, train_set, list(train_prompts), callback)
        if callback.cancelled:
            raise TrainingCancelled(steps, f"{method.upper()} training")
        if not all(torch.isfinite(p).all() for p in e.models.policy.parameters()):
            result.status, result.message = "nan", f"{method.upper()} produced non-finite weights at step {steps}"
        elif evaluates:
            result.eval_after = evaluate(e, e.models.policy)
    except TrainingCancelled as cancelled:
        result.status, result.message = "cancelled", str(cancelled)
        return result
    except NonFiniteReward as bad:
        result.status, result.message = "nan", f"{method.upper()} stopped before using it: {bad}"
    return conclude(cfg, result)


def train_rloo(cfg: RLOOConfig, policy, tokenizer, reward_fn: RewardFn, train_prompts, eval_prompts,
               **kwargs) -> PPOResult:
    """RLOO: see `train_online`."""
    return train_online("rloo", cfg, policy, tokenizer, reward_fn, train_prompts, eval_prompts, **kwargs)


def train_grpo(cfg: GRPOConfig, policy, tokenizer, reward_fn: RewardFn, train_prompts, eval_prompts,
               **kwargs) -> PPOResult:
    """GRPO: see `train_online`."""
    return train_online("grpo", cfg, policy, tokenizer, reward_fn, train_prompts, eval_prompts, **kwargs)
