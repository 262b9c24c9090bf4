"""Batched sampling with the KV cache: K completions for each prompt, left-padded batches.

Attention masks are built from the prompts' lengths, never as `token != pad`: SmolLM2's `<|im_end|>`
closes every chat turn inside a prompt, so a pad-based mask would hide real tokens. A completion ends
at the first stop token (the eos, and `<|im_end|>` for chat models), which is kept in its ids.

`should_stop()` (optional) is polled between decode steps and between batches: when it returns True,
sampling stops within one token and raises `TrainingCancelled` (no partial samples are returned).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .callbacks import ShouldStop, TrainingCancelled
from .data import TextOrMessages, prompt_dataset
from .tensors import pad_sequences


@dataclass
class Samples:
    prompt_index: list[int] = field(default_factory=list)  # which prompt each sample answers
    query_ids: list[list[int]] = field(default_factory=list)  # the prompt's tokens
    response_ids: list[list[int]] = field(default_factory=list)  # generated tokens, up to and including the stop
    texts: list[str] = field(default_factory=list)  # the response decoded without special tokens
    ended: list[bool] = field(default_factory=list)  # True when a stop token came before max_new_tokens


class _StopWhenAsked(StoppingCriteria):
    """Ends `model.generate` after the current decode step once `should_stop()` says so."""

    def __init__(self, should_stop: ShouldStop):
        self.should_stop = should_stop
        self.asked = False

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        self.asked = self.asked or bool(self.should_stop())
        return torch.full((input_ids.shape[0],), self.asked, dtype=torch.bool, device=input_ids.device)


def _check_stop(should_stop: ShouldStop | None, done: int) -> None:
    if should_stop is not None and should_stop():
        raise TrainingCancelled(done, what="sampling")


def stop_token_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    ids.add(im_end)
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def sample_ids(
    model, tokenizer, query_ids: Sequence[Sequence[int]], *, k: int = 1, max_new_tokens: int = 64,
    temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None, batch_size: int = 16,
    should_stop: ShouldStop | None = None,
) -> Samples:
    """Sample `k` responses for each tokenized prompt (greedy when temperature is 0).

    Raises `TrainingCancelled` when `should_stop()` turns True (checked before each decode step)."""
    if seed is not None:
        torch.manual_seed(seed)
    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    jobs = [(index, list(ids)) for index, ids in enumerate(query_ids) for _ in range(k)]
    out = Samples()
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        for start in range(0, len(jobs), batch_size):
            _check_stop(should_stop, start)
            batch = jobs[start : start + batch_size]
            stopper = _StopWhenAsked(should_stop) if should_stop is not None else None
            input_ids, attention_mask = pad_sequences([ids for _, ids in batch], pad_id, side="left")
            input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
            generated = model.generate(
                input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                top_p=top_p if temperature > 0 else None, top_k=None, pad_token_id=pad_id, eos_token_id=stops,
                use_cache=True, stopping_criteria=StoppingCriteriaList([stopper]) if stopper else None,
            )[:, input_ids.shape[1]:]
            if stopper is not None and stopper.asked:
                raise TrainingCancelled(start, what="sampling")
            for (index, ids), row in zip(batch, generated.tolist()):
                end = next((i for i, token in enumerate(row) if token in stops), None)
                response = row[: end + 1] if end is not None else row
                out.prompt_index.append(index)
                out.query_ids.append(ids)
                out.response_ids.append(response)
                out.texts.append(tokenizer.decode(response, skip_special_tokens=True).strip())
                out.ended.append(end is not None)
    finally:
        model.train(was_training)
    return out


def sample_prompts(
    model, tokenizer, prompts: Sequence[TextOrMessages], *, k: int = 2, max_new_tokens: int = 64,
    temperature: float = 0.8, top_p: float = 0.95, seed: int | None = 0, batch_size: int = 16,
    max_prompt_length: int | None = 512, should_stop: ShouldStop | None = None,
) -> Samples:
    """Text (or chat) prompts → `k` samples each, with ids, texts and `ended`; `prompt_index` points into
    `prompts`. Chat messages (and plain strings, as a user turn) go through the chat template when the
    tokenizer has one; prompts longer than `max_prompt_length` tokens get no samples."""
    dataset = prompt_dataset(list(prompts), tokenizer, max_prompt_length=max_prompt_length)
    if len(dataset) == 0:
        return Samples()
    samples = sample_ids(model, tokenizer, dataset["input_ids"], k=k, max_new_tokens=max_new_tokens,
                         temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                         should_stop=should_stop)
    samples.prompt_index = [dataset["prompt_index"][row] for row in samples.prompt_index]
    return samples


def sample_completions(
    model, tokenizer, prompts: Sequence[TextOrMessages], *, k: int = 2, max_new_tokens: int = 64,
    temperature: float = 0.8, top_p: float = 0.95, seed: int | None = 0, batch_size: int = 16,
    max_prompt_length: int | None = 512, should_stop: ShouldStop | None = None,
) -> list[list[str]]:
    """Text (or chat) prompts → k completion texts each ([] for a prompt too long to sample)."""
    samples = sample_prompts(model, tokenizer, prompts, k=k, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_p=top_p, seed=seed, batch_size=batch_size, max_prompt_length=max_prompt_length,
                             should_stop=should_stop)
    completions: list[list[str]] = [[] for _ in prompts]
    for index, text in zip(samples.prompt_index, samples.texts):
        completions[index].append(text)
    return completions
