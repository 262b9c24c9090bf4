"""The model-side pieces of PPO: the value head (zero at the start, saved beside the policy), the right-padded
batch of query+response sequences, and one forward pass giving the sampler's log-probs, values and entropy."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..sampling.generate import Samples
from ..tensors import pad_sequences
from .math import entropy_from_logits, warp_logits

VALUE_HEAD_FILE = "value_head.safetensors"


class ValueHead(nn.Module):
    """A scalar value per position from the policy's last hidden state; starts at exactly zero output."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden).squeeze(-1)


def load_value_head(hidden_size: int, path: Path | None) -> ValueHead:
    """A zero value head, or the one saved at `path` (a value_head.safetensors file) when it exists."""
    head = ValueHead(hidden_size)
    if path is not None and Path(path).is_file():
        from safetensors.torch import load_file

        head.load_state_dict(load_file(str(path)))
    return head


def value_head_path_for(policy, explicit: Path | None) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    source = str(getattr(policy, "name_or_path", "") or "")
    return Path(source) / VALUE_HEAD_FILE if source and Path(source).is_dir() else None


@dataclass
class Batch:
    """Right-padded query+response sequences; response-aligned tensors cover tokens[:, 1:]."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor  # 1 on positions (in tokens[:, 1:]) that are response tokens

    def rows(self, idx: torch.Tensor) -> Batch:
        return Batch(self.input_ids[idx], self.attention_mask[idx], self.response_mask[idx])

    def to(self, device) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.response_mask.to(device))


def make_batch(samples: Samples, pad_id: int) -> Batch:
    input_ids, attention_mask = pad_sequences([q + r for q, r in zip(samples.query_ids, samples.response_ids)],
                                              pad_id, side="right")
    positions = torch.arange(input_ids.shape[1] - 1)
    starts = torch.tensor([len(q) - 1 for q in samples.query_ids]).unsqueeze(1)
    ends = attention_mask.sum(1, keepdim=True) - 1
    response_mask = ((positions >= starts) & (positions < ends)).float()
    return Batch(input_ids, attention_mask, response_mask)


def _keeps_logits(model) -> bool:
    """Whether the model's forward takes `logits_to_keep` (transformers' causal LMs do), through DDP and peft."""
    inner = getattr(model, "module", model)
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def forward_logprobs(model, value_head: ValueHead | None, batch: Batch, temperature: float = 1.0,
                     top_p: float = 1.0, with_entropy: bool = False):
    """Log-probs of the taken tokens under the sampler's distribution (temperature, top-p), values and entropy,
    aligned with tokens[:, 1:]. Only response positions are computed (0 elsewhere): the top-p rule is costly,
    and the lm_head runs only from the first to the last response position (the prompts' logits, about half
    of an 8 × 32-token rollout's, are never needed; the vocabulary projection is ~1/5 of SmolLM2's forward)."""
    keeps, columns = _keeps_logits(model), batch.response_mask.any(0).nonzero().squeeze(1)
    start, stop = (int(columns[0]), int(columns[-1]) + 1) if keeps and len(columns) else (0, batch.response_mask.shape[1])
    kept = dict(logits_to_keep=torch.arange(start, stop, device=batch.input_ids.device)) if keeps else {}
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                output_hidden_states=value_head is not None, use_cache=False, **kept)
    tokens = batch.input_ids[:, 1:]
    where = batch.response_mask.bool()
    logits = out.logits if keeps else out.logits[:, start:stop]  # positions start..stop-1 of tokens[:, 1:]
    logits = warp_logits(logits[where[:, start:stop]].float(), temperature, top_p, keep=tokens[where])
    logprobs = torch.zeros(tokens.shape, dtype=logits.dtype, device=logits.device).masked_scatter(
        where, torch.log_softmax(logits, dim=-1).gather(-1, tokens[where].unsqueeze(-1)).squeeze(-1))
    values = value_head(out.hidden_states[-1][:, :-1].float()) if value_head is not None else None
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = torch.zeros(tokens.shape, device=logits.device).masked_scatter(where, entropy_from_logits(logits))
    return logprobs, values, entropy
