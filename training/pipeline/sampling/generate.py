"""Batched sampling with the KV cache: K completions for each prompt, left-padded batches.

Attention masks are built from the prompts' lengths, never as `token != pad`: SmolLM2's `<|im_end|>`
closes every chat turn inside a prompt, so a pad-based mask would hide real tokens. A completion ends
at the first stop token (the eos, and `<|im_end|>` for chat models), which is kept in its ids.

`should_stop()` (optional) is polled after every decode step and between batches: when it returns True,
sampling stops within one token and raises `TrainingCancelled` (no partial samples are returned). The runner's
`should_stop` reads the run's cancel flag itself (throttled), so a cancel reaches this loop directly, never only
through the heartbeat thread, which a busy sampler can starve. Every decode step also reports its tokens to
`callbacks.count_generated` (a run's token budget), before `should_stop` is asked.

What the sampler does for speed (measured on SmolLM2-135M, 8 prompts × 32 tokens, one CPU thread; see the
PPO benchmark in bench/RESULTS.md): the KV cache and SDPA attention (transformers' defaults, kept); top-p through
`ppo.math.top_p_removed`, which sorts only the 4096 most likely tokens when they hold the nucleus (89% of
rows), instead of transformers' full sort of the 49k-token vocabulary at every step (~15% of decode CPU), with
the same rule, so PPO's ratio keeps using the sampler's own distribution; LoRA adapters folded into the base
weights while sampling (`merged_lora`: ~27 ms less CPU per decode step than peft's unmerged forward, for
0.5 s per merge and exact restore: it pays from ~20 decode steps; PPO samples 64 tokens, publishing 96).
Measured and not kept: a static KV cache (no faster), eager attention (6% slower than SDPA), torch.compile
(still compiling after 15 minutes on a loaded machine; on a quiet one, with a static cache, 60 s of compiling
and then 3.0–3.3 CPU s per 8 × 32 tokens against 2.85 s eager: no gain to pay it back).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from ..callbacks import OnBatch, ShouldStop, TrainingCancelled, count_generated
from ..data import TextOrMessages, prompt_dataset
from ..ppo.math import top_p_removed
from ..tensors import pad_sequences


@dataclass
class Samples:
    prompt_index: list[int] = field(default_factory=list)  # which prompt each sample answers
    query_ids: list[list[int]] = field(default_factory=list)  # the prompt's tokens
    response_ids: list[list[int]] = field(default_factory=list)  # generated tokens, up to and including the stop
    texts: list[str] = field(default_factory=list)  # the response decoded without special tokens
    ended: list[bool] = field(default_factory=list)  # True when a stop token came before max_new_tokens
    # With `with_logprobs` only, one row per response token: the log-prob the sampler drew it with (from the
    # processed scores: temperature, top-p) and the last hidden state (the lm_head's input) it was drawn from.
    logprobs: list[torch.Tensor] = field(default_factory=list)
    hidden: list[torch.Tensor] = field(default_factory=list)


class _StopWhenAsked(StoppingCriteria):
    """After every decode step: count its tokens (one per row: the compute spent, rows already past their stop
    token included), then end `model.generate` once `should_stop()` says so."""

    def __init__(self, should_stop: ShouldStop | None):
        self.should_stop = should_stop
        self.asked = False

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        count_generated(input_ids.shape[0])
        self.asked = self.asked or (self.should_stop is not None and bool(self.should_stop()))
        return torch.full((input_ids.shape[0],), self.asked, dtype=torch.bool, device=input_ids.device)


class _Warp(LogitsProcessor):
    """Temperature, then transformers' TopPLogitsWarper rule through `top_p_removed`: `ppo.math.warp_logits`'s
    order, which the ratio's forward uses. One processor for both, because generate() runs custom processors
    before its own warpers: a custom nucleus next to generate's temperature drew top-p from the untempered
    logits, so from the second token on the sampler kept a wider nucleus than the ratio assumed (the first
    token's nucleus hid it: at temperature 0.7, top-p 0.6, 0.82 against 1.0 for the top word on the four-word
    test policy)."""

    def __init__(self, temperature: float, top_p: float):
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / self.temperature
        return scores.masked_fill(top_p_removed(scores, self.top_p), -float("inf")) if self.top_p < 1 else scores


def _mergeable(module) -> bool:
    """A plain LoRA linear layer (no DoRA-like variant) with its adapters enabled (not inside peft's
    `disable_adapter()`, where the forward is the base alone) and not merged yet."""
    from peft.tuners.lora import LoraLayer

    return (isinstance(module, LoraLayer) and not module.merged and not module.disable_adapters
            and not getattr(module, "lora_variant", None) and isinstance(module.get_base_layer(), torch.nn.Linear))


@contextmanager
def merged_lora(model) -> Iterator[None]:
    """LoRA adapters folded into the base weights inside the block (one matmul per projection instead of three
    small ones and peft's per-layer bookkeeping), then unmerged. Unmerging (W + ΔW) − ΔW rounds ~1% of the
    weights one ulp away from W, so the elements that would not round-trip are saved at merge time and written
    back (~12 MB for SmolLM2): the base weights, PPO's reference, come back bit for bit. Not for the update (the
    adapters' gradients need them unmerged); a no-op for models without LoRA or already merged."""
    try:
        import peft  # noqa: F401
    except ImportError:  # no peft, no adapters
        yield
        return
    restore = []
    try:
        with torch.no_grad():
            for layer in [m for m in model.modules() if _mergeable(m)]:
                weight = layer.get_base_layer().weight
                before = weight.detach().clone()
                layer.merge()
                roundtrip = weight.detach().clone()
                for name in reversed(layer.merged_adapters):  # what unmerge() computes, in its order
                    roundtrip -= layer.get_delta_weight(name).to(roundtrip.dtype)
                lost = (roundtrip != before).flatten().nonzero().squeeze(1)
                restore.append((layer, lost, before.flatten()[lost]))
        yield
    finally:
        with torch.no_grad():
            for layer, lost, values in reversed(restore):
                layer.unmerge()
                layer.get_base_layer().weight.data.view(-1)[lost] = values


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
    should_stop: ShouldStop | None = None, with_logprobs: bool = False, on_batch: OnBatch | None = None,
) -> Samples:
    """Sample `k` responses for each tokenized prompt (greedy when temperature is 0). `with_logprobs` also
    keeps, per response token, the sampler's log-prob and last hidden state (`Samples.logprobs`, `.hidden`):
    PPO's old log-probs and values, with no second forward pass.

    Raises `TrainingCancelled` when `should_stop()` turns True (asked before each batch and after each decode
    step); `on_batch` hears (samples drawn, samples to draw) after each batch."""
    if seed is not None:
        torch.manual_seed(seed)
    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    jobs = [(index, list(ids)) for index, ids in enumerate(query_ids) for _ in range(k)]
    out = Samples()
    # generate()'s own temperature, top-k and top-p stay off (1.0, 0, 1.0: not the model's generation_config
    # defaults): `_Warp` does temperature and top-p, in that order.
    settings = dict(max_new_tokens=max_new_tokens, do_sample=temperature > 0, pad_token_id=pad_id, eos_token_id=stops,
                    temperature=1.0, top_p=1.0, top_k=0, use_cache=True,
                    logits_processor=LogitsProcessorList([_Warp(temperature, top_p)]) if temperature > 0 else None)
    was_training = model.training
    model.eval()
    with merged_lora(model):
        try:
            for start in range(0, len(jobs), batch_size):
                _check_stop(should_stop, start)
                batch = jobs[start : start + batch_size]
                rows, logprobs, hidden = _generate(model, [ids for _, ids in batch], pad_id, settings, should_stop,
                                                   start, with_logprobs)
                for n, ((index, ids), row) in enumerate(zip(batch, rows)):
                    end = next((i for i, token in enumerate(row) if token in stops), None)
                    response = row[: end + 1] if end is not None else row
                    out.prompt_index.append(index)
                    out.query_ids.append(ids)
                    out.response_ids.append(response)
                    out.texts.append(tokenizer.decode(response, skip_special_tokens=True).strip())
                    out.ended.append(end is not None)
                    if with_logprobs:
                        out.logprobs.append(logprobs[n, : len(response)])
                        out.hidden.append(hidden[n, : len(response)])
                if on_batch is not None:
                    on_batch(len(out.texts), len(jobs))
        finally:
            model.train(was_training)
    return out


def _generate(model, queries: list[list[int]], pad_id: int, settings: dict, should_stop: ShouldStop | None,
              done: int, with_logprobs: bool = False):
    """One left-padded generate() call: the generated ids of each row (padding after a stop included) and, with
    `with_logprobs`, [rows, steps] log-probs of the drawn tokens under the processed scores (exactly what the
    sampler drew from) and [rows, steps, hidden] lm_head inputs (the last position at each step); else None."""
    device = next(model.parameters()).device
    stopper = _StopWhenAsked(should_stop)
    input_ids, attention_mask = pad_sequences(queries, pad_id, side="left")
    hidden: list[torch.Tensor] = []
    hook = (model.get_output_embeddings().register_forward_pre_hook(lambda _, args: hidden.append(args[0][:, -1]))
            if with_logprobs else None)
    try:
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **settings,
                             stopping_criteria=StoppingCriteriaList([stopper]),
                             output_scores=with_logprobs, return_dict_in_generate=True)
    finally:
        if hook is not None:
            hook.remove()
    if stopper.asked:
        raise TrainingCancelled(done, what="sampling")
    generated = out.sequences[:, input_ids.shape[1]:]
    if not with_logprobs:
        return generated.tolist(), None, None
    if len(hidden) != len(out.scores):
        raise RuntimeError(f"{len(hidden)} lm_head calls for {len(out.scores)} decode steps")
    logprobs = torch.stack([torch.log_softmax(step.float(), -1).gather(1, generated[:, i : i + 1]).squeeze(1)
                            for i, step in enumerate(out.scores)], 1)
    return generated.tolist(), logprobs.cpu(), torch.stack(hidden, 1).float().cpu()


def sample_prompts(
    model, tokenizer, prompts: Sequence[TextOrMessages], *, k: int = 2, max_new_tokens: int = 64,
    temperature: float = 0.8, top_p: float = 0.95, seed: int | None = 0, batch_size: int = 16,
    max_prompt_length: int | None = 512, should_stop: ShouldStop | None = None, on_batch: OnBatch | None = None,
) -> Samples:
    """Text (or chat) prompts → `k` samples each, with ids, texts and `ended`; `prompt_index` points into
    `prompts`. Chat messages (and plain strings, as a user turn) go through the chat template when the
    tokenizer has one; prompts longer than `max_prompt_length` tokens get no samples."""
    dataset = prompt_dataset(list(prompts), tokenizer, max_prompt_length=max_prompt_length)
    if len(dataset) == 0:
        return Samples()
    samples = sample_ids(model, tokenizer, dataset["input_ids"], k=k, max_new_tokens=max_new_tokens,
                         temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                         should_stop=should_stop, on_batch=on_batch)
    samples.prompt_index = [dataset["prompt_index"][row] for row in samples.prompt_index]
    return samples


def sample_completions(
    model, tokenizer, prompts: Sequence[TextOrMessages], *, k: int = 2, max_new_tokens: int = 64,
    temperature: float = 0.8, top_p: float = 0.95, seed: int | None = 0, batch_size: int = 16,
    max_prompt_length: int | None = 512, should_stop: ShouldStop | None = None, on_batch: OnBatch | None = None,
) -> list[list[str]]:
    """Text (or chat) prompts → k completion texts each ([] for a prompt too long to sample)."""
    samples = sample_prompts(model, tokenizer, prompts, k=k, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_p=top_p, seed=seed, batch_size=batch_size, max_prompt_length=max_prompt_length,
                             should_stop=should_stop, on_batch=on_batch)
    completions: list[list[str]] = [[] for _ in prompts]
    for index, text in zip(samples.prompt_index, samples.texts):
        completions[index].append(text)
    return completions
