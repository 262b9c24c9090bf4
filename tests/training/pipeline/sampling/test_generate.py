import torch

from training.pipeline.sampling.generate import sample_completions, sample_ids, sample_prompts, stop_token_ids
from training.pipeline.models import load_causal_lm, load_tokenizer


def test_batched_greedy_equals_one_by_one(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    model = load_causal_lm(tiny_llama_dir)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                          {"role": "user", "content": "And then?"}], add_generation_prompt=True,
                                         tokenize=True, return_dict=True)["input_ids"]
    assert chat.count(tokenizer.convert_tokens_to_ids("<|im_end|>")) >= 3  # stop tokens inside the prompt
    queries = [tokenizer("Hello there, how are you today?")["input_ids"], tokenizer("Hi")["input_ids"], chat]
    batched = sample_ids(model, tokenizer, queries, max_new_tokens=8, temperature=0.0, batch_size=3)
    single = [sample_ids(model, tokenizer, [q], max_new_tokens=8, temperature=0.0).response_ids[0] for q in queries]
    assert batched.response_ids == single
    assert batched.query_ids == [list(q) for q in queries]


def test_k_samples_per_prompt_and_stop_detection(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    model = load_causal_lm(tiny_llama_dir)
    stops = stop_token_ids(tokenizer)
    # Make the stop token overwhelmingly likely: every sample must end at once with it.
    bias = torch.zeros(model.config.vocab_size)
    bias[stops[0]] = 100.0
    model.lm_head.register_forward_hook(lambda module, args, output: output + bias)
    out = sample_ids(model, tokenizer, [[1, 2, 3], [4, 5]], k=3, max_new_tokens=5, temperature=1.0, seed=0)
    assert out.prompt_index == [0, 0, 0, 1, 1, 1]
    assert all(out.ended) and all(ids == [stops[0]] for ids in out.response_ids)
    completions = sample_completions(model, tokenizer, ["What is 2+2?", [{"role": "user", "content": "Hi"}]], k=2)
    assert [len(c) for c in completions] == [2, 2]


def test_sample_prompts_maps_back_to_the_prompts_and_skips_long_ones(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    model = load_causal_lm(tiny_llama_dir)
    prompts = ["Short question?", "word " * 400, [{"role": "user", "content": "A chat question?"}]]
    settings = dict(k=2, max_new_tokens=4, temperature=1.0, seed=3, max_prompt_length=64)
    out = sample_prompts(model, tokenizer, prompts, **settings)
    assert out.prompt_index == [0, 0, 2, 2]
    assert all(1 <= len(ids) <= 4 for ids in out.response_ids) and len(out.texts) == len(out.ended) == 4
    assert all(ended == (ids[-1] in stop_token_ids(tokenizer)) for ids, ended in zip(out.response_ids, out.ended))
    again = sample_prompts(model, tokenizer, prompts, **settings)
    assert again.response_ids == out.response_ids  # seeded
    heard = []
    sample_prompts(model, tokenizer, prompts, **settings, batch_size=3, on_batch=lambda *counts: heard.append(counts))
    assert heard == [(3, 4), (4, 4)]  # the progress bar hears every batch
