"""DPO on a tiny Llama over SmolLM2's tokenizer, from TRL-format rows (strings and chat messages)."""

import pytest
import torch

from training.pipeline.config import DPOConfig
from training.pipeline.dpo import train_dpo
from training.pipeline.models import load_causal_lm, verify_manifest


@pytest.mark.parametrize("use_lora", [True, False])
def test_dpo_trains_registers_and_keeps_the_base(tiny_llama_dir, preference_rows, tmp_path, use_lora):
    base_before = {k: v.clone() for k, v in load_causal_lm(tiny_llama_dir).state_dict().items()}
    steps = []
    cfg = DPOConfig(policy=str(tiny_llama_dir), use_lora=use_lora, max_steps=3, batch_size=4, learning_rate=1e-3,
                    max_length=128)
    result = train_dpo(cfg, preference_rows[:24], preference_rows[24:32], tmp_path / "dpo",
                       on_step=lambda s, m: steps.append((s, m)))
    assert result.metrics["train/steps"] == 3 and steps
    assert 0.0 <= result.metrics["eval/accuracy"] <= 1.0 and result.metrics["eval/pairs"] == 8
    manifest = verify_manifest(tmp_path / "dpo")
    assert manifest["method"] == "dpo"
    trained = load_causal_lm(tmp_path / "dpo")
    assert any(not torch.equal(base_before[k], v) for k, v in trained.state_dict().items())
    # The registered starting point itself never changes (its files are read, not written).
    assert all(torch.equal(base_before[k], v) for k, v in load_causal_lm(tiny_llama_dir).state_dict().items())


def test_dpo_config_checks():
    with pytest.raises(ValueError, match="beta"):
        DPOConfig(beta=0)
