"""Padding token sequences into a batch. The one place that does it, for sampling, PPO and scoring.

The attention mask is built from each sequence's length, never as `token != pad`: SmolLM2's pad token
(`<|im_end|>`) also closes every chat turn inside a prompt, so a mask from token ids would hide real tokens.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_id: int, *, side: Literal["left", "right"] = "right",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), both (len(sequences), longest) long tensors.

    Left padding suits generation (every row's next token is in the last column); right padding suits
    scoring and training (a row's tokens start at column 0).
    """
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        columns = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, columns] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, columns] = 1
    return ids, mask
