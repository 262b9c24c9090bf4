"""Saving a PPO result: the merged policy, its tokenizer and the value head, atomically with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry_files import save_model_atomic
from .model import VALUE_HEAD_FILE
from .report import PPOResult


def merged_policy(result: PPOResult):
    """The trained policy as a plain transformers model (LoRA merged into the weights)."""
    model = result.model
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def save_policy(result: PPOResult, tokenizer, dest: Path, manifest_extra: dict[str, Any]) -> str:
    """Save the merged policy, its tokenizer and the value head (value_head.safetensors, loaded back by the next
    train_ppo on this directory) atomically into `dest` (which must not exist) with a manifest; returns its sha256."""
    from safetensors.torch import save_file

    model = merged_policy(result)

    def write(tmp_dir: Path) -> None:
        model.save_pretrained(tmp_dir, safe_serialization=True)
        tokenizer.save_pretrained(tmp_dir)
        if result.value_head is not None:  # RLOO and GRPO have none
            head = {k: v.contiguous() for k, v in result.value_head.state_dict().items()}
            save_file(head, str(tmp_dir / VALUE_HEAD_FILE))

    return save_model_atomic(write, Path(dest), manifest_extra)
