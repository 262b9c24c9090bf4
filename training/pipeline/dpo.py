"""DPO as the simpler alternative to PPO: `trl.DPOTrainer` on the same preference rows, fp32 on the CPU.

    rows ─▶ data.preference_dataset_for(tokenizer) ─▶ trl.DPOTrainer (LoRA: the reference is the base with
    adapters disabled) ─▶ held-out preference accuracy of the implicit reward ─▶ merge ─▶ save_pretrained_atomic

The registered policy is a plain safetensors directory, like every other model in the registry.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import DPOConfig
from .data import preference_dataset_for, split_by_prompt
from .models import load_causal_lm, load_tokenizer, lora_config, merge_lora, resolve_model_path, save_pretrained_atomic
from .reward import OnStep, ShouldStop, TrainingCancelled, _progress_callback, quiet_progress_bars


@dataclass
class DPOResult:
    path: Path
    manifest_sha256: str
    metrics: dict[str, float | None]
    history: list[dict[str, float]] = field(default_factory=list)
    model: Any = None  # the trained policy (LoRA merged), as saved at `path`


def trl_dpo_args(cfg: DPOConfig, output_dir: str):
    import trl

    return trl.DPOConfig(
        output_dir=output_dir, bf16=False, fp16=False, activation_checkpointing=False, report_to=[], push_to_hub=False,
        save_strategy="no", eval_strategy="no", logging_strategy="steps", logging_steps=cfg.logging_steps,
        disable_tqdm=True, learning_rate=cfg.learning_rate, num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, seed=cfg.seed, max_length=cfg.max_length,
        beta=cfg.beta, loss_type=[cfg.loss_type], dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


@torch.no_grad()
def implicit_reward_accuracy(
    model, reference, tokenizer, rows: Sequence[dict[str, Any]], beta: float
) -> dict[str, float]:
    """Share of held-out pairs where β·(log π/π_ref) ranks chosen above rejected, and the mean margin."""
    from .data import format_completion, format_prompt, input_format_for

    fmt = input_format_for(tokenizer)

    def sequence_logprob(m, prompt, completion) -> float:
        if fmt.conversational:
            prompt_ids = tokenizer.apply_chat_template(format_prompt(prompt, fmt), add_generation_prompt=True,
                                                       tokenize=True, return_dict=True)["input_ids"]
            full = tokenizer.apply_chat_template(format_prompt(prompt, fmt) + format_completion(completion, fmt),
                                                 tokenize=True, return_dict=True)["input_ids"]
        else:
            prompt_ids = tokenizer(format_prompt(prompt, fmt))["input_ids"]
            full = tokenizer(format_prompt(prompt, fmt) + format_completion(completion, fmt))["input_ids"]
        ids = torch.tensor([full])
        logits = m(input_ids=ids).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None]).squeeze(1)
        return float(logprobs[len(prompt_ids) - 1:].sum())

    correct, margins = 0, []
    for row in rows:
        rewards = []
        for key in ("chosen", "rejected"):
            policy_lp = sequence_logprob(model, row["prompt"], row[key])
            if reference is None:
                with model.disable_adapter():
                    ref_lp = sequence_logprob(model, row["prompt"], row[key])
            else:
                ref_lp = sequence_logprob(reference, row["prompt"], row[key])
            rewards.append(beta * (policy_lp - ref_lp))
        correct += rewards[0] > rewards[1]
        margins.append(rewards[0] - rewards[1])
    return {"eval/accuracy": correct / len(rows), "eval/margin": sum(margins) / len(margins),
            "eval/pairs": float(len(rows))}


def train_dpo(
    cfg: DPOConfig, train_rows: Sequence[dict[str, Any]], eval_rows: Sequence[dict[str, Any]] | None, output_dir: Path,
    on_step: OnStep | None = None, should_stop: ShouldStop | None = None, *, model=None, tokenizer=None,
    ref_model=None,
) -> DPOResult:
    """Train the policy `cfg.policy` with DPO on preference rows and register it at `output_dir` (must not exist).

    Rows: TRL's preference format (`prompt`, `chosen`, `rejected` as strings or chat messages); other
    columns (`margin`, provenance) are dropped. `model`/`tokenizer`: an already loaded policy to train
    instead of loading `cfg.policy` (with LoRA its weights receive the merged adapters). `ref_model`: the
    frozen reference for full fine-tuning (default: a fresh copy of the starting policy; with LoRA the
    reference is the policy with its adapters disabled). Raises TrainingCancelled when should_stop() says so.
    """
    import trl
    from transformers import PrinterCallback

    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} already exists; registered models are never overwritten")
    if eval_rows is None:
        train_rows, eval_rows = split_by_prompt(list(train_rows), cfg.eval_fraction, seed=cfg.seed)
    if not train_rows:
        raise ValueError("no training pairs")
    policy_path = resolve_model_path(cfg.policy) if model is None else cfg.policy
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(policy_path)
    model = model if model is not None else load_causal_lm(policy_path, verify=cfg.verify_policy)
    if not cfg.use_lora and ref_model is None:
        ref_model = copy.deepcopy(model)  # what TRL would reload from disk; kept here for the held-out check
    if ref_model is not None:
        ref_model.eval()
        ref_model.requires_grad_(False)
    dataset = preference_dataset_for(tokenizer, train_rows)
    keep = [c for c in dataset.column_names if c in {"prompt", "chosen", "rejected"}]
    dataset = dataset.select_columns(keep)  # TRL's columns only; margin and provenance are ours
    history: list[dict[str, float]] = []
    callback = _progress_callback(on_step, should_stop, history)
    peft_config = None
    if cfg.use_lora:
        peft_config = lora_config(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    with quiet_progress_bars(), tempfile.TemporaryDirectory(prefix="dpo-trainer-") as scratch:
        trainer = trl.DPOTrainer(model=model, ref_model=None if cfg.use_lora else ref_model,
                                 args=trl_dpo_args(cfg, scratch), train_dataset=dataset,
                                 processing_class=tokenizer, peft_config=peft_config, callbacks=[callback])
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
    if callback.cancelled:
        raise TrainingCancelled(step=trainer.state.global_step)
    trained = trainer.model
    reference = None if cfg.use_lora else ref_model
    metrics: dict[str, float | None] = {
        "train/loss": float(output.training_loss), "train/steps": float(trainer.state.global_step),
        "train/pairs": float(len(dataset)), "train/runtime_s": seconds,
    }
    last = next((h for h in reversed(history) if "rewards/accuracies" in h), {})
    metrics["train/rewards_accuracy"] = last.get("rewards/accuracies")
    metrics["train/rewards_margin"] = last.get("rewards/margins")
    metrics["train/last_loss"] = last.get("loss")
    if eval_rows:
        trained.eval()
        metrics.update(implicit_reward_accuracy(trained, reference, tokenizer, list(eval_rows), cfg.beta))
    merged = merge_lora(trained)
    sha = save_pretrained_atomic(merged, tokenizer, output_dir, {
        "kind": "policy", "method": "dpo", "parent": str(policy_path), "metrics": metrics,
    })
    return DPOResult(path=output_dir, manifest_sha256=sha, metrics=metrics, history=history, model=merged)
