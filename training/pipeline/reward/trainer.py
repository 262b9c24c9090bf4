"""Reward-model training with `trl.RewardTrainer`, then held-out evaluation and atomic registration.

    rows ─▶ data.preference_dataset (chat or plain text, per the backbone's tokenizer)
         ─▶ trl.RewardTrainer (loss -logsigmoid(r_chosen - r_rejected [- margin]) + centring; fp32, no bf16,
            no gradient checkpointing) ─▶ merge LoRA ─▶ held-out metrics ─▶ save_pretrained_atomic (+ manifest)

The saved directory is an ordinary `AutoModelForSequenceClassification` checkpoint (one output). Its manifest
records the input format and max_length used in training, so `scoring.RewardScorer` presents pairs
exactly as TRL did. Held-out metrics (`eval`) include `eval/accuracy_low`/`_high`, the 95% interval the
caller's acceptance rule reads; with no held-out rows there are no `eval/*` metrics.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..callbacks import OnStep, ShouldStop, TrainedModel, TrainingCancelled, progress_callback, quiet_progress_bars
from ..data import input_format_for, preference_dataset
from ..devices import choose_device, is_main_process
from ..models import load_reward_model, load_tokenizer, lora_config, merge_lora, resolve_model_path
from ..registry_files import manifest_sha256, save_pretrained_atomic
from .config import RewardConfig
from .eval import evaluate_reward_model
from .scoring import max_positions


def trl_reward_args(cfg: RewardConfig, output_dir: str, max_length: int):
    """The `trl.RewardConfig` for `cfg`: fp32 (bf16 and gradient checkpointing off), no saving, no reporting."""
    import trl

    return trl.RewardConfig(
        output_dir=output_dir,
        bf16=choose_device().bf16,  # TRL defaults to bf16: ~300x slower on this CPU; autocast on a GPU that has it
        fp16=False,
        # TRL defaults gradient checkpointing on: recomputation without memory pressure is pure cost here.
        # (`activation_checkpointing` is its transformers 5 name; setting it also turns the old alias off.)
        activation_checkpointing=False,
        report_to=[],
        push_to_hub=False,
        save_strategy="no",  # the finished model is saved once, atomically, by save_pretrained_atomic
        eval_strategy="no",  # evaluation runs after training on the held-out rows (evaluate_reward_model)
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        disable_tqdm=True,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        max_length=max_length,
        center_rewards_coefficient=cfg.center_rewards_coefficient or None,
        disable_dropout=cfg.disable_dropout,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning without a GPU only warns
    )


def prepare_reward_backbone(cfg: RewardConfig):
    """Tokenizer, model (one output, fp32), input format and effective max_length for `cfg.backbone`."""
    from transformers import set_seed

    backbone = resolve_model_path(cfg.backbone)
    tokenizer = load_tokenizer(backbone)
    fmt = input_format_for(tokenizer)
    if not fmt.conversational and tokenizer.eos_token is None:
        # MiniLM has no eos; TRL appends eos to every plain-text completion, so its [SEP] plays that part.
        if tokenizer.sep_token is None:
            raise ValueError(f"{backbone}: the tokenizer has neither a chat template, an eos nor a sep token")
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    set_seed(cfg.seed)  # the reward head is initialised at load time
    model = load_reward_model(backbone, verify=cfg.verify_backbone, tokenizer=tokenizer)
    model.config.eos_token_id = tokenizer.eos_token_id
    positions = max_positions(model)
    max_length = min(cfg.max_length, positions) if positions else cfg.max_length
    return backbone, tokenizer, model, fmt, max_length


def train_reward_model(
    cfg: RewardConfig,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]] | None,
    output_dir: Path,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> TrainedModel:
    """Train a reward model on preference rows and register it at `output_dir` (which must not exist).

    `eval_rows` (the export's test split) are scored after training: `eval/accuracy` with its 95% interval
    (`eval/accuracy_low`, `eval/accuracy_high`), `eval/n_pairs`, calibration and length bias. None or [] means
    no evaluation (no `eval/*` metrics). `on_step(step, metrics)` receives TRL's logs every
    `cfg.logging_steps` (loss, accuracy, margin, ...). `should_stop()` is polled after every step; when it
    returns True training stops, nothing is saved and `callbacks.TrainingCancelled` is raised.
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} already exists; registered models are never overwritten")
    if not train_rows:
        raise ValueError("no training pairs")
    if should_stop is not None and should_stop():
        raise TrainingCancelled(step=0, what="reward-model training")
    with quiet_progress_bars():
        backbone, tokenizer, model, fmt, max_length = prepare_reward_backbone(cfg)
        history: list[dict[str, float]] = []
        dataset = preference_dataset(train_rows, fmt, with_margin=cfg.use_margin, margin_scale=cfg.margin_scale)
        trained, metrics = _fit(cfg, model, tokenizer, dataset, max_length,
                                progress_callback(on_step, should_stop, history), history)
        if not is_main_process():  # under accelerate launch only the main process evaluates and saves
            return TrainedModel(path=output_dir, manifest_sha256="", metrics=metrics, history=history, model=trained)
        if eval_rows:
            metrics.update(evaluate_reward_model(trained, tokenizer, eval_rows, fmt, max_length=max_length,
                                                 batch_size=cfg.eval_batch_size,
                                                 calibration_bins=cfg.calibration_bins))
    sha = save_pretrained_atomic(trained, tokenizer, output_dir, {
        "kind": "reward",
        "backbone": str(backbone),
        "backbone_manifest_sha256": manifest_sha256(backbone) if (backbone / "manifest.json").is_file() else None,
        "input_format": fmt.to_dict(),
        "max_length": max_length,
        "config": asdict(cfg),
        "metrics": metrics,
    })
    return TrainedModel(path=output_dir, manifest_sha256=sha, metrics=metrics, history=history, model=trained)


def _fit(cfg: RewardConfig, model, tokenizer, train_dataset, max_length: int, callback, history):
    """Run `trl.RewardTrainer`; return the trained model (LoRA merged, eval mode) and the train/* metrics."""
    import trl
    from transformers import PrinterCallback

    peft_config = None
    if cfg.use_lora:
        peft_config = lora_config(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, reward=True)
    with tempfile.TemporaryDirectory(prefix="reward-trainer-") as scratch_dir:
        trainer = trl.RewardTrainer(
            model=model, args=trl_reward_args(cfg, scratch_dir, max_length), train_dataset=train_dataset,
            processing_class=tokenizer, peft_config=peft_config, callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)  # on_step gets the logs; no print() of every dict
        kept_pairs = len(trainer.train_dataset)
        if kept_pairs == 0:
            raise ValueError(f"all {len(train_dataset)} training pairs are longer than max_length={max_length}")
        started = time.perf_counter()
        train_output = trainer.train()
        train_seconds = time.perf_counter() - started
    steps = trainer.state.global_step
    if callback.cancelled:
        raise TrainingCancelled(step=steps, what="reward-model training")
    trained = merge_lora(trainer.model)
    trained.eval()
    pairs_trained = steps * cfg.batch_size * cfg.gradient_accumulation_steps
    if cfg.max_steps < 0:  # the last batch of each epoch may be short
        pairs_trained = min(pairs_trained, kept_pairs * cfg.num_train_epochs)
    last_train_log = next((h for h in reversed(history) if "accuracy" in h), {})
    return trained, {
        "train/pairs": float(kept_pairs),
        "train/dropped_pairs": float(len(train_dataset) - kept_pairs),
        "train/steps": float(steps),
        "train/loss": float(train_output.training_loss),
        "train/accuracy": last_train_log.get("accuracy"),
        "train/runtime_s": train_seconds,
        "train/pairs_per_s": pairs_trained / train_seconds,
        "train/max_length": float(max_length),
    }
