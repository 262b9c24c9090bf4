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
from pathlib import Path
from typing import Any

import torch

from ..callbacks import OnStep, ShouldStop, TrainedModel, TrainingCancelled, progress_callback, quiet_progress_bars
from ..data import PREFERENCE_COLUMNS, format_completion, format_prompt, input_format_for, preference_dataset_for
from ..devices import choose_device, is_main_process
from ..models import load_causal_lm, load_tokenizer, lora_config, merge_lora, resolve_model_path
from ..registry_files import save_pretrained_atomic
from ..reward.eval import pairwise_accuracy, task_clusters
from .config import DPOConfig
from .weighted import weighted_trainer_class


def trl_dpo_args(cfg: DPOConfig, output_dir: str):
    import trl

    return trl.DPOConfig(
        output_dir=output_dir, bf16=choose_device().bf16, fp16=False, activation_checkpointing=False, report_to=[], push_to_hub=False,
        save_strategy="no", eval_strategy="no", logging_strategy="steps", logging_steps=cfg.logging_steps,
        disable_tqdm=True, learning_rate=cfg.learning_rate, num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, seed=cfg.seed, max_length=cfg.max_length,
        beta=cfg.beta, loss_type=[cfg.loss_type], dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


@torch.no_grad()
def completion_logprob(model, tokenizer, prompt, completion) -> float:
    """Sum of log π(completion tokens | prompt), the pair shown as the policy's tokenizer shows it."""
    fmt = input_format_for(tokenizer)
    prompt_part, full = format_prompt(prompt, fmt), format_prompt(prompt, fmt) + format_completion(completion, fmt)
    if fmt.conversational:
        prompt_ids = tokenizer.apply_chat_template(prompt_part, add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"]
        full_ids = tokenizer.apply_chat_template(full, tokenize=True, return_dict=True)["input_ids"]
    else:
        prompt_ids, full_ids = tokenizer(prompt_part)["input_ids"], tokenizer(full)["input_ids"]
    ids = torch.tensor([full_ids], device=next(model.parameters()).device)
    logits = model(input_ids=ids).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None]).squeeze(1)
    return float(logprobs[len(prompt_ids) - 1 :].sum())


@torch.no_grad()
def implicit_reward_accuracy(
    model, reference, tokenizer, rows: Sequence[dict[str, Any]], beta: float
) -> dict[str, float | None]:
    """Held-out pairs ranked by the implicit reward β·(log π − log π_ref): `eval/accuracy` with its bounds
    clustered by task and `eval/n_pairs` (as for reward models), and `eval/margin`, the mean chosen-minus-rejected
    implicit reward (how far training moved the chosen-vs-rejected log-prob margin from the reference's).
    `eval/human_*`: the same on the pairs people labelled (rows without a `source`, or `source` "people"), which
    alone the DPO gate reads: a reward model's pairs measure agreement with that model, not with people.
    `reference=None`: the policy with its LoRA adapters disabled."""
    margins = []
    for row in rows:
        rewards = []
        for key in ("chosen", "rejected"):
            policy_lp = completion_logprob(model, tokenizer, row["prompt"], row[key])
            if reference is None:
                with model.disable_adapter():
                    ref_lp = completion_logprob(model, tokenizer, row["prompt"], row[key])
            else:
                ref_lp = completion_logprob(reference, tokenizer, row["prompt"], row[key])
            rewards.append(beta * (policy_lp - ref_lp))
        margins.append(rewards[0] - rewards[1])
    return held_out_accuracy(margins, rows)


def held_out_accuracy(margins: Sequence[float], rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The metrics of `implicit_reward_accuracy` from each held-out row's implicit-reward margin (chosen −
    rejected): on all pairs, and (`eval/human_*`) on the pairs people labelled, clustered by task (prompt)."""
    human = [i for i, row in enumerate(rows) if row.get("source", "people") == "people"]
    clusters = task_clusters(rows)
    return {**pairwise_accuracy(margins, clusters=clusters),
            **pairwise_accuracy([margins[i] for i in human], prefix="eval/human_",
                                clusters=[clusters[i] for i in human]),
            "eval/margin": sum(margins) / len(margins) if margins else None}


def train_dpo(
    cfg: DPOConfig, train_rows: Sequence[dict[str, Any]], eval_rows: Sequence[dict[str, Any]] | None, output_dir: Path,
    on_step: OnStep | None = None, should_stop: ShouldStop | None = None, *, model=None, tokenizer=None,
    ref_model=None,
) -> TrainedModel:
    """Train the policy `cfg.policy` with DPO on preference rows and register it at `output_dir` (must not exist).

    Rows: TRL's preference format (`prompt`, `chosen`, `rejected` as strings or chat messages); other
    columns (`margin`, provenance) are dropped, except `weight`: rows that carry one train with each pair's loss
    scaled by it (`weighted`). `eval_rows` (the export's test split) give `eval/*` metrics
    (see `implicit_reward_accuracy`); None or [] means no evaluation. `model`/`tokenizer`: an already loaded
    policy to train instead of loading `cfg.policy` (with LoRA its weights receive the merged adapters).
    `ref_model`: the frozen reference for full fine-tuning (default: a fresh copy of the starting policy; with
    LoRA the reference is the policy with its adapters disabled). Raises `callbacks.TrainingCancelled` when
    should_stop() says so.
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} already exists; registered models are never overwritten")
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
    history: list[dict[str, float]] = []
    trained, metrics = _fit(cfg, model, None if cfg.use_lora else ref_model, tokenizer, train_rows,
                            progress_callback(on_step, should_stop, history), history)
    if not is_main_process():  # under accelerate launch only the main process evaluates and saves
        return TrainedModel(path=output_dir, manifest_sha256="", metrics=metrics, history=history, model=trained)
    if eval_rows:
        trained.eval()
        metrics.update(implicit_reward_accuracy(trained, None if cfg.use_lora else ref_model, tokenizer,
                                                list(eval_rows), cfg.beta))
    merged = merge_lora(trained)
    sha = save_pretrained_atomic(merged, tokenizer, output_dir, {
        "kind": "policy", "method": "dpo", "parent": str(policy_path), "metrics": metrics,
    })
    return TrainedModel(path=output_dir, manifest_sha256=sha, metrics=metrics, history=history, model=merged)


def _fit(cfg: DPOConfig, model, ref_model, tokenizer, train_rows, callback, history):
    """Run `trl.DPOTrainer`; return the trained model (adapters still attached under LoRA) and train/* metrics."""
    import trl
    from transformers import PrinterCallback

    dataset = preference_dataset_for(tokenizer, train_rows).select_columns(list(PREFERENCE_COLUMNS))
    weighted = any("weight" in row for row in train_rows)  # per-pair weights: the iterative-DPO round's rows
    if weighted:
        dataset = dataset.add_column("weight", [float(row.get("weight", 1.0)) for row in train_rows])
        # per-pair label smoothing (cDPO / robust DPO): an iterative round's noisy labels; 0 = taken as right
        dataset = dataset.add_column("smoothing", [float(row.get("smoothing") or 0.0) for row in train_rows])
    trainer_class = weighted_trainer_class() if weighted else trl.DPOTrainer
    peft_config = None
    if cfg.use_lora:
        peft_config = lora_config(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    with quiet_progress_bars(), tempfile.TemporaryDirectory(prefix="dpo-trainer-") as scratch:
        trainer = trainer_class(model=model, ref_model=ref_model, args=trl_dpo_args(cfg, scratch),
                                 train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
                                 callbacks=[callback])
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
    if callback.cancelled:
        raise TrainingCancelled(step=trainer.state.global_step, what="DPO training")
    last = next((h for h in reversed(history) if "rewards/accuracies" in h), {})
    return trainer.model, {
        "train/loss": float(output.training_loss), "train/steps": float(trainer.state.global_step),
        "train/pairs": float(len(dataset)), "train/runtime_s": seconds,
        "train/rewards_accuracy": last.get("rewards/accuracies"), "train/rewards_margin": last.get("rewards/margins"),
        "train/last_loss": last.get("loss"),
    }
