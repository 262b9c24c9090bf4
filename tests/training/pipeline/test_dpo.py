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


def test_dpo_on_a_loaded_model_keeps_the_reference_bit_for_bit(tiny_llama_dir, preference_rows, tmp_path):
    from training.pipeline.models import load_tokenizer

    rows = preference_rows[:16]
    assert {type(r["prompt"]) for r in rows} == {str, list} and "margin" in rows[0]  # both formats, extra columns
    model, reference = load_causal_lm(tiny_llama_dir), load_causal_lm(tiny_llama_dir)
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    cfg = DPOConfig(policy=str(tiny_llama_dir), use_lora=False, max_steps=2, batch_size=4, learning_rate=1e-3,
                    max_length=128)
    result = train_dpo(cfg, rows, rows[:4], tmp_path / "dpo", model=model, tokenizer=load_tokenizer(tiny_llama_dir),
                       ref_model=reference)
    assert {"train/loss", "train/rewards_accuracy", "train/rewards_margin", "eval/accuracy", "eval/margin"} <= set(
        result.metrics)
    assert result.history[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: the policy starts as the reference
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())
