"""Sampling a LoRA policy with its adapters merged into the base weights (`generate.merged_lora`).

Merged, the policy must answer as the unmerged one does (same logits within float tolerance, so the same
greedy answers), and afterwards the adapters are unmerged and the base weights — PPO's reference — are
bit for bit what they were, even though (W + ΔW) − ΔW does not round-trip exactly in floating point.
"""

import copy

import pytest
import torch

from training.pipeline.sampling.generate import merged_lora, sample_ids
from training.pipeline.models import load_tokenizer, lora_config, tiny_causal_lm


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return load_tokenizer(tiny_llama_dir)


def lora_policy(tokenizer, seed=0):
    """A tiny Llama with LoRA adapters that change its answers (peft starts B at zero: no effect)."""
    from peft import get_peft_model

    model = tiny_causal_lm(tokenizer, seed=seed)
    policy = get_peft_model(model, lora_config(model, r=4, alpha=8, dropout=0.0))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return policy.eval()


def base_weights(policy):
    return {k: v.clone() for k, v in policy.state_dict().items() if "lora_" not in k}


def lora_layers(policy):
    from peft.tuners.lora import LoraLayer

    return [m for m in policy.modules() if isinstance(m, LoraLayer)]


QUERIES = [[1, 2, 3, 4, 5], [6, 7, 8], [9, 10, 11, 12, 13, 14, 15]]


def test_merged_logits_equal_the_unmerged_and_the_base_comes_back_bit_for_bit(tokenizer):
    policy = lora_policy(tokenizer)
    before = base_weights(policy)
    ids = torch.tensor([QUERIES[0] + QUERIES[1]])
    with torch.no_grad():
        unmerged = policy(input_ids=ids).logits
        with policy.disable_adapter():
            base = policy(input_ids=ids).logits
        with merged_lora(policy):
            assert all(layer.merged for layer in lora_layers(policy))
            merged = policy(input_ids=ids).logits
    assert (unmerged - base).abs().max() > 1e-2  # the adapters matter: not a trivial comparison
    assert torch.allclose(merged, unmerged, atol=1e-5), (merged - unmerged).abs().max()
    assert not any(layer.merged for layer in lora_layers(policy))
    after = base_weights(policy)
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_sampling_merges_for_generation_and_unmerges_after(tokenizer):
    policy = lora_policy(tokenizer)
    before = base_weights(policy)
    merged_during = []
    generate = policy.generate

    def recording_generate(**kwargs):
        merged_during.append(all(layer.merged for layer in lora_layers(policy)))
        return generate(**kwargs)

    policy.generate = recording_generate
    greedy = sample_ids(policy, tokenizer, QUERIES, max_new_tokens=6, temperature=0.0, batch_size=2)
    assert merged_during == [True, True]
    assert not any(layer.merged for layer in lora_layers(policy))
    assert all(torch.equal(base_weights(policy)[k], v) for k, v in before.items())
    # The same answers as the adapters folded in for good (peft's merge_and_unload on a copy) ...
    folded = copy.deepcopy(policy).merge_and_unload()
    assert sample_ids(folded, tokenizer, QUERIES, max_new_tokens=6, temperature=0.0).response_ids == greedy.response_ids
    # ... and not the base model's: the adapters were applied.
    with policy.disable_adapter():
        plain = sample_ids(policy, tokenizer, QUERIES, max_new_tokens=6, temperature=0.0)
    assert plain.response_ids != greedy.response_ids


def test_a_failed_generation_still_unmerges(tokenizer):
    policy = lora_policy(tokenizer)
    before = base_weights(policy)

    def broken_generate(**kwargs):
        raise RuntimeError("out of memory")

    policy.generate = broken_generate
    with pytest.raises(RuntimeError):
        sample_ids(policy, tokenizer, QUERIES, max_new_tokens=4, temperature=1.0)
    assert not any(layer.merged for layer in lora_layers(policy))
    assert all(torch.equal(base_weights(policy)[k], v) for k, v in before.items())
