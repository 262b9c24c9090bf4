"""Does PPO learn? A one-token task on a tiny Llama (SmolLM2's tokenizer) on the default LoRA path.

The policy answers with one of four words; the reward is 1 for " yes". The exact probability of " yes"
(from the logits, on held-out prompts) must rise clearly within a few iterations; controls: a flipped
reward makes it fall, a constant reward leaves it where it was, sampling at temperature 0.7 learns too.
These fail when learning breaks (no optimiser step, the advantage's sign flipped), which was checked by
breaking the code once.
"""

import time

import pytest
import torch
from torch import nn

from training.pipeline.config import PPOConfig
from training.pipeline.data import prompt_dataset
from training.pipeline.models import load_tokenizer, tiny_causal_lm
from training.pipeline.ppo import train_ppo

WORDS = [" yes", " no", " cat", " dog"]
TRAIN = [f"Is number {i} a good one?" for i in range(24)]
HELD_OUT = [f"Should I pick option {i}?" for i in range(8)]


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return load_tokenizer(tiny_llama_dir)


def four_word_policy(tokenizer, seed):
    model = tiny_causal_lm(tokenizer, seed=seed)
    head = nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    head.weight = model.lm_head.weight
    with torch.no_grad():
        head.bias.zero_()
        head.bias[[word_id(tokenizer, w) for w in WORDS]] = 14.0
    model.lm_head = head
    return model


def word_id(tokenizer, word):
    return tokenizer(word, add_special_tokens=False)["input_ids"][0]


@torch.no_grad()
def p_yes(model, tokenizer, prompts=HELD_OUT):
    """The exact probability of " yes" as the first answer token, averaged over the prompts."""
    model.eval()
    ids = prompt_dataset(prompts, tokenizer, max_prompt_length=256)["input_ids"]
    probs = [torch.softmax(model(input_ids=torch.tensor([q])).logits[0, -1], -1)[word_id(tokenizer, " yes")]
             for q in ids]
    return float(sum(probs) / len(probs))


def run(tokenizer, reward, seed=0, **overrides):
    values = dict(policy="tiny", num_iterations=4, batch_size=16, mini_batch_size=8, ppo_epochs=2, max_new_tokens=1,
                  learning_rate=2e-2, temperature=1.0, top_p=1.0, missing_eos_penalty_std=0.0, init_kl_coef=0.01,
                  kl_bound=1e6, seed=seed)
    values.update(overrides)
    policy = four_word_policy(tokenizer, seed)
    before = p_yes(policy, tokenizer)
    result = train_ppo(PPOConfig(**values), policy, tokenizer, reward, TRAIN, [])
    assert result.status == "completed" and PPOConfig(**values).use_lora
    return before, p_yes(result.model, tokenizer)


def says_yes(prompts, texts):
    return [1.0 if t == "yes" else 0.0 for t in texts]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_good_answer_becomes_more_likely(tokenizer, seed):
    before, after = run(tokenizer, says_yes, seed)
    assert after > before + 0.15, (before, after)


def test_a_flipped_reward_makes_it_less_likely(tokenizer):
    before, after = run(tokenizer, lambda p, t: [1.0 - s for s in says_yes(p, t)])
    assert after < before - 0.1, (before, after)


def test_a_constant_reward_leaves_it_alone(tokenizer):
    before, after = run(tokenizer, lambda p, t: [1.0] * len(t))
    assert abs(after - before) < 0.02, (before, after)


def test_sampling_at_temperature_0_7_learns_too(tokenizer):
    before, after = run(tokenizer, says_yes, temperature=0.7, top_p=0.95)
    assert after > before + 0.15, (before, after)
