"""Reward models: training with `trl.RewardTrainer`, evaluation on held-out pairs, and scoring.

    rows ─▶ data.preference_dataset (chat or plain text, per the backbone's tokenizer)
         ─▶ trl.RewardTrainer (loss -logsigmoid(r_chosen - r_rejected [- margin]) + centring; fp32, no bf16,
            no gradient checkpointing) ─▶ merge LoRA ─▶ held-out metrics ─▶ save_pretrained_atomic (+ manifest)

The saved directory is an ordinary `AutoModelForSequenceClassification` checkpoint (one output). Its manifest
records the input format and max_length used in training, so `RewardScorer` presents pairs exactly as TRL did
(`tokenize_pair` reproduces TRL's preprocessing). The scorer re-tokenizes text with its own tokenizer: a
policy with another tokenizer decodes its completions first and passes strings.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import RewardConfig
from .data import (
    InputFormat,
    TextOrMessages,
    format_completion,
    format_prompt,
    input_format_for,
    messages_to_text,
    preference_dataset,
    split_by_prompt,
)
from .models import (
    load_reward_model,
    load_tokenizer,
    lora_config,
    manifest_sha256,
    merge_lora,
    read_manifest,
    resolve_model_path,
    save_pretrained_atomic,
    verify_manifest,
)

OnStep = Callable[[int, dict[str, float]], None]
ShouldStop = Callable[[], bool]


class TrainingCancelled(Exception):
    """`should_stop()` returned True: training stopped at `step` and nothing was saved."""

    def __init__(self, step: int):
        super().__init__(f"reward-model training cancelled at step {step}; nothing was saved")
        self.step = step


@dataclass
class RewardResult:
    path: Path  # the registered model directory
    manifest_sha256: str  # pins every file of it; store on the ModelVersion row
    metrics: dict[str, float | None]  # flat: train/*, eval/*
    history: list[dict[str, float]] = field(default_factory=list)  # every on_step payload, in order


# --- tokenization, exactly as TRL's RewardTrainer does it ------------------------------------------------------


def tokenize_pair(tokenizer, prompt: TextOrMessages, completion: TextOrMessages, fmt: InputFormat) -> list[int]:
    """Token ids of one (prompt, completion) as `trl.RewardTrainer._prepare_dataset` builds them.

    Conversational: the chat template over prompt + completion messages. Plain text: prompt (ending with the
    separator) + completion + eos, tokenized with the tokenizer's special tokens.
    """
    prompt_part = format_prompt(prompt, fmt)
    completion_part = format_completion(completion, fmt)
    if fmt.conversational:
        encoded = tokenizer.apply_chat_template(prompt_part + completion_part, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])
    eos = tokenizer.eos_token
    if eos and not completion_part.endswith(eos):
        completion_part = completion_part + eos
    return list(tokenizer(text=prompt_part + completion_part)["input_ids"])


def _truncate(ids: list[int], max_length: int, special_ids: set[int]) -> list[int]:
    """Keep a leading special token ([CLS] for BERT's pooler, <|im_start|> for chat) and the last tokens:
    the completion is at the end and is what is being judged."""
    if len(ids) <= max_length:
        return ids
    if ids and ids[0] in special_ids:
        return ids[:1] + ids[len(ids) - (max_length - 1) :]
    return ids[len(ids) - max_length :]


@torch.no_grad()
def score_token_ids(model, sequences: Sequence[list[int]], pad_token_id: int, batch_size: int = 16) -> list[float]:
    """One reward per token sequence. Batches by similar length (less padding) and restores the order.

    The attention mask is built from lengths, never from `token != pad`.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rewards = [0.0] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    try:
        for start in range(0, len(order), batch_size):
            batch_indices = order[start : start + batch_size]
            longest = max(len(sequences[i]) for i in batch_indices)
            input_ids = torch.full((len(batch_indices), longest), pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch_indices), longest), dtype=torch.long)
            for row, i in enumerate(batch_indices):
                ids = sequences[i]
                input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                attention_mask[row, : len(ids)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            for row, i in enumerate(batch_indices):
                rewards[i] = float(logits[row, 0])
    finally:
        model.train(was_training)
    return rewards


# --- scoring a registered reward model --------------------------------------------------------------------------


class RewardScorer:
    """Load a registered reward model (manifest verified) and score (prompt, completion) pairs.

    >>> scorer = RewardScorer(path)
    >>> scorer.score(["What is 2+2?"], ["4"])          # strings or chat messages in, floats out
    """

    def __init__(
        self,
        path: str | Path,
        *,
        verify: bool = True,
        batch_size: int = 16,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ):
        self.path = Path(path)
        manifest = verify_manifest(self.path) if verify else _manifest_or_empty(self.path)
        self.tokenizer = load_tokenizer(self.path)
        with quiet_progress_bars():
            self.model = load_reward_model(self.path, verify=False, tokenizer=self.tokenizer)
        if device is not None:
            self.model.to(device)
        self.model.eval()
        self.input_format = (
            InputFormat.from_dict(manifest["input_format"])
            if "input_format" in manifest
            else input_format_for(self.tokenizer)
        )
        self.max_length = max_length or manifest.get("max_length") or _max_positions(self.model) or 512
        self.batch_size = batch_size
        self.pad_token_id = self.model.config.pad_token_id
        self.special_ids = set(self.tokenizer.all_special_ids)
        self.truncated = 0  # pairs cut to max_length by the last call

    def score(self, prompts: Sequence[TextOrMessages], completions: Sequence[TextOrMessages]) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        sequences = [
            tokenize_pair(self.tokenizer, prompt, completion, self.input_format)
            for prompt, completion in zip(prompts, completions)
        ]
        self.truncated = sum(len(ids) > self.max_length for ids in sequences)
        sequences = [_truncate(ids, self.max_length, self.special_ids) for ids in sequences]
        return score_token_ids(self.model, sequences, self.pad_token_id, self.batch_size)

    __call__ = score


def _manifest_or_empty(path: Path) -> dict[str, Any]:
    try:
        return read_manifest(path)
    except ValueError:
        return {}


def _max_positions(model) -> int | None:
    return getattr(model.config.get_text_config(), "max_position_embeddings", None)


# --- evaluation -------------------------------------------------------------------------------------------------


def expected_calibration_error(p_chosen: Sequence[float], n_bins: int = 10) -> float:
    """Top-label ECE of P(chosen preferred) = sigmoid(r_chosen - r_rejected) against the human labels.

    The predicted side is the one with p >= 0.5, its confidence max(p, 1 - p) in [0.5, 1]; bins are equal-width
    on [0.5, 1]. ECE = sum over bins of (bin share) * |accuracy in bin - mean confidence in bin|.
    """
    if not p_chosen:
        return float("nan")
    confidence = [max(p, 1.0 - p) for p in p_chosen]
    correct = [1.0 if p > 0.5 else 0.0 for p in p_chosen]
    bins: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(confidence):
        bins[min(int((c - 0.5) / 0.5 * n_bins), n_bins - 1)].append(i)
    ece = 0.0
    for members in bins:
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            mean_confidence = sum(confidence[i] for i in members) / len(members)
            ece += len(members) / len(p_chosen) * abs(accuracy - mean_confidence)
    return ece


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson correlation; None when either side is constant (undefined)."""
    n = len(xs)
    if n < 2:
        return None
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    var_x = sum((x - mean_x) ** 2 for x in xs)
    var_y = sum((y - mean_y) ** 2 for y in ys)
    if var_x == 0 or var_y == 0:
        return None
    return cov / math.sqrt(var_x * var_y)


def preference_metrics(
    rewards_chosen: Sequence[float],
    rewards_rejected: Sequence[float],
    *,
    agreement: Sequence[float | None] = (),
    chosen_lengths: Sequence[int] = (),
    rejected_lengths: Sequence[int] = (),
    calibration_bins: int = 10,
    prefix: str = "eval/",
) -> dict[str, float | None]:
    """Held-out metrics of a reward model, flat.

    accuracy: share of pairs with r_chosen > r_rejected. agreement_ceiling: mean annotator agreement of the pairs
    that have one (a model cannot beat the humans' own consistency); accuracy_vs_ceiling = accuracy / ceiling.
    ece: calibration of sigmoid(r_chosen - r_rejected). reward_length_corr: Pearson r of reward vs completion
    length in characters over all completions (high = the model may pay for length: reward-hacking risk).
    """
    n = len(rewards_chosen)
    margins = [c - r for c, r in zip(rewards_chosen, rewards_rejected)]
    accuracy = sum(m > 0 for m in margins) / n if n else None
    known_agreement = [a for a in agreement if a is not None]
    ceiling = sum(known_agreement) / len(known_agreement) if known_agreement else None
    all_rewards = list(rewards_chosen) + list(rewards_rejected)
    mean_reward = sum(all_rewards) / len(all_rewards) if all_rewards else None
    metrics: dict[str, float | None] = {
        "pairs": float(n),
        "accuracy": accuracy,
        "agreement_ceiling": ceiling,
        "accuracy_vs_ceiling": accuracy / ceiling if accuracy is not None and ceiling else None,
        "ece": expected_calibration_error([1 / (1 + math.exp(-m)) for m in margins], calibration_bins) if n else None,
        "margin": sum(margins) / n if n else None,
        "reward_mean": mean_reward,
        "reward_std": (
            math.sqrt(sum((r - mean_reward) ** 2 for r in all_rewards) / len(all_rewards)) if all_rewards else None
        ),
        "reward_length_corr": (
            pearson(all_rewards, [float(x) for x in list(chosen_lengths) + list(rejected_lengths)])
            if chosen_lengths
            else None
        ),
    }
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def evaluate_reward_model(
    model,
    tokenizer,
    rows: Sequence[dict[str, Any]],
    fmt: InputFormat,
    *,
    max_length: int,
    batch_size: int = 16,
    calibration_bins: int = 10,
) -> dict[str, float | None]:
    """Score held-out rows with an in-memory reward model. Pairs past `max_length` are dropped and counted, as
    TRL does in training (so train and eval see the same population)."""
    kept, sequences = [], []
    for row in rows:
        chosen_ids = tokenize_pair(tokenizer, row["prompt"], row["chosen"], fmt)
        rejected_ids = tokenize_pair(tokenizer, row["prompt"], row["rejected"], fmt)
        if len(chosen_ids) <= max_length and len(rejected_ids) <= max_length:
            kept.append(row)
            sequences += [chosen_ids, rejected_ids]
    rewards = score_token_ids(model, sequences, model.config.pad_token_id, batch_size)
    metrics = preference_metrics(
        rewards[0::2],
        rewards[1::2],
        agreement=[row.get("agreement") for row in kept],
        chosen_lengths=[len(messages_to_text(row["chosen"])) for row in kept],
        rejected_lengths=[len(messages_to_text(row["rejected"])) for row in kept],
        calibration_bins=calibration_bins,
    )
    metrics["eval/dropped_pairs"] = float(len(rows) - len(kept))
    return metrics


# --- training ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Silence datasets' and transformers' progress bars (job logs read line by line), then restore them."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_were_on = not datasets.are_progress_bars_disabled()
    transformers_were_on = hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if datasets_were_on:
            datasets.enable_progress_bars()
        if transformers_were_on:
            hf_logging.enable_progress_bar()


def _progress_callback(on_step: OnStep | None, should_stop: ShouldStop | None, history: list[dict[str, float]]):
    """A TrainerCallback forwarding TRL's logs to `on_step` and polling `should_stop` after every step."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        cancelled = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            metrics = {key: float(value) for key, value in logs.items() if isinstance(value, (int, float))}
            history.append({"step": float(state.global_step), **metrics})
            if on_step is not None:
                on_step(state.global_step, metrics)

        def on_step_end(self, args, state, control, **kwargs):
            if should_stop is not None and should_stop():
                self.cancelled = True
                control.should_training_stop = True

    return ProgressCallback()


def trl_reward_args(cfg: RewardConfig, output_dir: str, max_length: int):
    """The `trl.RewardConfig` for `cfg`: fp32 (bf16 and gradient checkpointing off), no saving, no reporting."""
    import trl

    return trl.RewardConfig(
        output_dir=output_dir,
        bf16=False,  # TRL defaults to bf16: ~300x slower on this CPU
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
    max_positions = _max_positions(model)
    max_length = min(cfg.max_length, max_positions) if max_positions else cfg.max_length
    return backbone, tokenizer, model, fmt, max_length


def train_reward_model(
    cfg: RewardConfig,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]] | None,
    output_dir: Path,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> RewardResult:
    """Train a reward model on preference rows and register it at `output_dir` (which must not exist).

    `eval_rows=None` holds out `cfg.eval_fraction` of the prompts of `train_rows`; `[]` skips evaluation.
    `on_step(step, metrics)` receives TRL's logs every `cfg.logging_steps` (loss, accuracy, margin, ...).
    `should_stop()` is polled after every step; when it returns True training stops, nothing is saved and
    TrainingCancelled is raised.
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} already exists; registered models are never overwritten")
    with quiet_progress_bars():
        return _train_reward_model(cfg, train_rows, eval_rows, output_dir, on_step, should_stop)


def _train_reward_model(cfg, train_rows, eval_rows, output_dir, on_step, should_stop) -> RewardResult:
    import trl
    from transformers import PrinterCallback

    if eval_rows is None:
        train_rows, eval_rows = split_by_prompt(train_rows, cfg.eval_fraction, seed=cfg.seed)
    if not train_rows:
        raise ValueError("no training pairs")
    if should_stop is not None and should_stop():
        raise TrainingCancelled(step=0)

    backbone, tokenizer, model, fmt, max_length = prepare_reward_backbone(cfg)
    train_dataset = preference_dataset(train_rows, fmt, with_margin=cfg.use_margin)
    history: list[dict[str, float]] = []
    callback = _progress_callback(on_step, should_stop, history)
    peft_config = (
        lora_config(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, reward=True)
        if cfg.use_lora
        else None
    )

    with tempfile.TemporaryDirectory(prefix="reward-trainer-") as scratch_dir:
        trainer = trl.RewardTrainer(
            model=model,
            args=trl_reward_args(cfg, scratch_dir, max_length),
            train_dataset=train_dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)  # on_step gets the logs; no print() of every dict
        kept_pairs = len(trainer.train_dataset)
        if kept_pairs == 0:
            raise ValueError(f"all {len(train_dataset)} training pairs are longer than max_length={max_length}")
        started = time.perf_counter()
        train_output = trainer.train()
        train_seconds = time.perf_counter() - started
    if callback.cancelled:
        raise TrainingCancelled(step=trainer.state.global_step)

    model = merge_lora(trainer.model)
    model.eval()
    steps = trainer.state.global_step
    pairs_trained = steps * cfg.batch_size * cfg.gradient_accumulation_steps
    if cfg.max_steps < 0:  # the last batch of each epoch may be short
        pairs_trained = min(pairs_trained, kept_pairs * cfg.num_train_epochs)
    last_train_log = next((h for h in reversed(history) if "accuracy" in h), {})
    metrics: dict[str, float | None] = {
        "train/pairs": float(kept_pairs),
        "train/dropped_pairs": float(len(train_dataset) - kept_pairs),
        "train/steps": float(steps),
        "train/loss": float(train_output.training_loss),
        "train/accuracy": last_train_log.get("accuracy"),
        "train/runtime_s": train_seconds,
        "train/pairs_per_s": pairs_trained / train_seconds,
        "train/max_length": float(max_length),
    }
    if eval_rows:
        metrics.update(
            evaluate_reward_model(
                model,
                tokenizer,
                eval_rows,
                fmt,
                max_length=max_length,
                batch_size=cfg.eval_batch_size,
                calibration_bins=cfg.calibration_bins,
            )
        )
    else:
        metrics["eval/pairs"] = 0.0

    backbone_manifest = backbone / "manifest.json"
    sha = save_pretrained_atomic(
        model,
        tokenizer,
        output_dir,
        {
            "kind": "reward",
            "backbone": str(backbone),
            "backbone_manifest_sha256": manifest_sha256(backbone) if backbone_manifest.is_file() else None,
            "input_format": fmt.to_dict(),
            "max_length": max_length,
            "config": asdict(cfg),
            "metrics": metrics,
        },
    )
    return RewardResult(path=output_dir, manifest_sha256=sha, metrics=metrics, history=history)
