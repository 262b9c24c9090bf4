#!/usr/bin/env python
"""TRL's PPOTrainer (`trl.experimental.ppo`, TRL 1.12) on bench/ppo.py's prompts and sizes, for `bench/ppo.py --trl`.

Runs in a venv of its own (TRL 1.12 pins what it needs; the project's venv has a TRL without PPOTrainer):

    python3.11 -m venv /work/sidevenvs/trl112 && /work/sidevenvs/trl112/bin/pip install torch==2.13.0 \
        trl==1.12.0 peft==0.21.2
    /work/sidevenvs/trl112/bin/python bench/ppo_trl.py --model PATH [--iterations 4] [--batch 8] ...

Imports nothing from the project. The setup TRL's PPO needs and ours does not: a value model (a second copy of
the policy with a scalar head, trained in full) and a reward *model* (TRL scores with a network only; ours
takes a function, so the bench's rule reward costs it nothing): here SmolLM2 with a fresh scalar head, whose
scores carry no meaning, so only the time and memory are comparable. LoRA r=16, alpha 32, dropout 0.05 on
the same projections as ours; the reference is the policy with its adapters disabled, as ours. TRL samples at
the temperature alone (no top-p), as ours does with `--top-p 1.0` (default 0.95). Prints `trl_ppo_iteration ...` and
`trl_ppo_peak_rss ...` lines in bench/ppo.py's format; the first iteration is warm-up, excluded.
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench/ppo.py (devices.passive_openmp), before torch

SUBJECTS = ["cats", "dogs", "the sea", "music", "trees", "coffee", "rain", "books", "cars", "bread", "snow", "birds"]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                              TrainerCallback)
    from transformers.utils import logging as hf_logging
    import trl
    try:
        from trl.experimental.ppo import PPOConfig, PPOTrainer
    except ImportError:
        print(f"trl_ppo unavailable: TRL {trl.__version__} has no trl.experimental.ppo", flush=True)
        return

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model, padding_side="left")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    prompts = [f"Do you like {s}? Answer in a few words." for s in SUBJECTS]
    ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True,
                                         return_dict=True)["input_ids"] for p in prompts]
    dataset = Dataset.from_dict({"input_ids": ids})
    policy = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    value_model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, dtype=torch.float32)
    reward_model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, dtype=torch.float32)
    for model in (value_model, reward_model):
        model.config.pad_token_id = tokenizer.pad_token_id
    with tempfile.TemporaryDirectory() as out:
        # TRL's batch is per_device_train_batch_size × gradient_accumulation_steps, cut into num_mini_batches,
        # one optimiser step each: 8 rollouts, 2 minibatches of 4, as ours.
        config = PPOConfig(output_dir=out, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
                           num_mini_batches=2, num_ppo_epochs=args.epochs, response_length=args.new_tokens,
                           total_episodes=args.batch * args.iterations, local_rollout_forward_batch_size=args.batch,
                           learning_rate=1e-4, temperature=0.8, stop_token="eos", missing_eos_penalty=1.0,
                           num_sample_generations=0, report_to=[], use_cpu=True, save_strategy="no", seed=0,
                           logging_steps=1, bf16=False, fp16=False, disable_tqdm=True)
        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_TARGETS,
                                 task_type="CAUSAL_LM")
        marks = []

        class Clock(TrainerCallback):
            def on_train_begin(self, *a, **k):
                marks.append((time.perf_counter(), time.process_time()))

            def on_step_end(self, *a, **k):
                marks.append((time.perf_counter(), time.process_time()))

        trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=None,
                             reward_model=reward_model, train_dataset=dataset, value_model=value_model,
                             peft_config=peft_config, callbacks=[Clock()])
        trainer.train()
    walls = [b[0] - a[0] for a, b in zip(marks, marks[1:])][1:]  # the first iteration is warm-up
    cpus = [b[1] - a[1] for a, b in zip(marks, marks[1:])][1:]
    settings = (f"mode=lora batch={args.batch} new_tokens={args.new_tokens} epochs={args.epochs} "
                f"minibatch={args.batch // 2} iterations={len(marks) - 1} warmup=1 threads={args.threads} "
                f"omp_wait={os.environ.get('OMP_WAIT_POLICY')} fp32 cpu trl={trl.__version__}")
    print(f"trl_ppo_iteration mean={statistics.mean(walls):.2f} median={statistics.median(walls):.2f} "
          f"cpu_median={statistics.median(cpus):.2f} samples_per_s={args.batch / statistics.median(walls):.2f} "
          f"{settings}", flush=True)
    print(f"trl_ppo_peak_rss mib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {settings} "
          "(model loads and training)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
