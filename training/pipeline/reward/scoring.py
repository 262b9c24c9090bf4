"""Scoring (prompt, completion) pairs with a reward model, presented exactly as TRL presented them in training.

A registered reward model's manifest records the input format and max_length used in training, so
`RewardScorer` shows pairs the way `trl.RewardTrainer` did (`tokenize_pair` reproduces TRL's preprocessing).
The scorer re-tokenizes text with its own tokenizer: a policy with another tokenizer decodes its completions
first and passes strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..callbacks import quiet_progress_bars
from ..data import InputFormat, TextOrMessages, format_completion, format_prompt, input_format_for
from ..models import load_reward_model, load_tokenizer
from ..registry_files import read_manifest, verify_manifest
from ..tensors import pad_sequences


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


def truncate_pair_ids(ids: list[int], max_length: int, special_ids: set[int]) -> list[int]:
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

    Right padding through `tensors.pad_sequences`: the attention mask comes from lengths, never `token != pad`.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rewards = [0.0] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    try:
        for start in range(0, len(order), batch_size):
            batch_indices = order[start : start + batch_size]
            input_ids, attention_mask = pad_sequences([sequences[i] for i in batch_indices], pad_token_id)
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            for row, i in enumerate(batch_indices):
                rewards[i] = float(logits[row, 0])
    finally:
        model.train(was_training)
    return rewards


def max_positions(model) -> int | None:
    """The longest input the model's position embeddings allow (None when it does not say)."""
    return getattr(model.config.get_text_config(), "max_position_embeddings", None)


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
        self.max_length = max_length or manifest.get("max_length") or max_positions(self.model) or 512
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
        sequences = [truncate_pair_ids(ids, self.max_length, self.special_ids) for ids in sequences]
        return score_token_ids(self.model, sequences, self.pad_token_id, self.batch_size)

    __call__ = score


def _manifest_or_empty(path: Path) -> dict[str, Any]:
    try:
        return read_manifest(path)
    except ValueError:
        return {}
