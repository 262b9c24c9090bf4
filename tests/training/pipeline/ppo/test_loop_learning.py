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

from training.pipeline.ppo.config import PPOConfig
from training.pipeline.data import prompt_dataset
from training.pipeline.models import load_tokenizer, tiny_causal_lm
from training.pipeline.ppo.loop import sample, train_ppo

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


@pytest.mark.parametrize("lora", [False, True])
def test_ratio_logprobs_equal_the_samplers(tokenizer, lora):
    """The old log-probs are those of the distribution generate() sampled from (temperature and top-p applied),
    taken from the sampler's own steps, and the update's forward (LoRA unmerged, right-padded, no KV cache)
    gives the same log-probs, so the first ratio is 1; the old values are the value head on the hidden states
    that forward sees. With LoRA the sampler runs with the adapters merged."""
    from training.pipeline.ppo.loop import Rollout, add_old_and_reference, setup
    from training.pipeline.ppo.model import forward_logprobs, make_batch

    policy = four_word_policy(tokenizer, 0)
    with torch.no_grad():
        policy.lm_head.bias[word_id(tokenizer, " no")] = 13.0  # a spread-out distribution, so top-p bites
    cfg = PPOConfig(policy="tiny", use_lora=lora, lora_r=4, lora_alpha=8, lora_dropout=0.0, batch_size=8,
                    mini_batch_size=4, max_new_tokens=3, temperature=0.7, top_p=0.6, gate_min_prompts=1)
    t = setup(cfg, policy, tokenizer, says_yes, TRAIN, [], held_out_judge=None, ref_model=None, base_model=None,
              value_head_path=None, on_step=None, should_stop=None)
    with torch.no_grad():  # adapters that change the answers (peft starts them at zero), a value head that is not
        for name, parameter in t.models.policy.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
        t.models.value_head.summary.weight.normal_(generator=torch.Generator().manual_seed(2))
    captured = []
    generate = t.models.policy.generate

    def recording_generate(**kwargs):  # the scores generate() drew each token from, after temperature and top-p
        out = generate(**kwargs)
        captured.append([torch.log_softmax(step.float(), -1) for step in out.scores])
        return out

    t.models.policy.generate = recording_generate
    samples = sample(t, t.models.policy, [t.prompts.train_queries[i] for i in range(8)], 1, 0, 1)
    theirs = torch.cat([torch.stack([captured[0][step][row, token] for step, token in enumerate(response)])
                        for row, response in enumerate(samples.response_ids)])
    rollout = Rollout(samples, make_batch(samples, tokenizer.pad_token_id), torch.zeros(8), torch.zeros(8))
    add_old_and_reference(t, rollout, {})
    assert torch.allclose(rollout.old_logprobs[rollout.mask.bool()], theirs, atol=1e-6), theirs
    assert (theirs > -0.01).sum() < len(theirs)  # the nucleus held more than one word: not a trivial check
    with torch.no_grad():
        logprobs, values, _ = forward_logprobs(t.models.policy, t.models.value_head, rollout.batch, temperature=0.7,
                                               top_p=0.6)
    assert torch.allclose(logprobs, rollout.old_logprobs, atol=1e-4), (logprobs, rollout.old_logprobs)
    assert torch.allclose(values * rollout.mask, rollout.old_values, atol=1e-4), (values, rollout.old_values)
    assert rollout.old_values.abs().sum() > 1 and rollout.mask.sum(1).max() > 1


def test_no_grad_passes_run_in_eval_mode_and_updates_in_train_mode(tokenizer):
    policy = four_word_policy(tokenizer, 0)
    seen = []
    policy.model.register_forward_pre_hook(lambda module, args: seen.append((torch.is_grad_enabled(), module.training)))
    run_cfg = PPOConfig(policy="tiny", num_iterations=2, batch_size=8, mini_batch_size=4, max_new_tokens=1,
                        use_lora=False, temperature=1.0, top_p=1.0, gate_min_prompts=1)
    train_ppo(run_cfg, policy, tokenizer, says_yes, TRAIN, HELD_OUT[:2])
    assert {mode for grad, mode in seen if grad} == {True}  # the updates: train mode
    assert {mode for grad, mode in seen if not grad} == {False}  # sampling, old/ref log-probs, values, evaluation


def test_a_reward_that_cannot_be_learned_publishes_nothing(tokenizer):
    noise = torch.Generator().manual_seed(0)
    result = train_ppo(PPOConfig(policy="tiny", num_iterations=2, batch_size=16, mini_batch_size=8, max_new_tokens=1,
                                 learning_rate=2e-2, temperature=1.0, top_p=1.0, kl_bound=1e6, gate_min_prompts=8),
                       four_word_policy(tokenizer, 0), tokenizer,
                       lambda p, t: torch.rand(len(t), generator=noise).tolist(), TRAIN, HELD_OUT)
    assert result.status == "completed" and result.gate is not None
    assert not result.gate.passed and not result.passes_gate and result.message.startswith("gate:")
