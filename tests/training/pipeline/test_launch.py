"""Training under `accelerate launch` on this CPU: 2 processes over gloo, tiny models, one iteration or step.

PPO on 2 processes samples the same answers as on 1 (each chunk of the batch is seeded by its place in it), so
its first iteration's reward, losses and entropy agree with a 1-process run's within LOSS_TOLERANCE. The
iteration takes two gradient steps (two epochs of one minibatch), so its second policy loss is measured after
an update made from the all-reduced gradients. Only float summation order differs; the advantages are divided
by the std of the scores (about 0.01 from the random tiny reward model), which magnifies it in the policy loss.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.pipeline.launch import launch_command

pytestmark = pytest.mark.ml

REPO_ROOT = Path(__file__).resolve().parents[3]
LOSS_TOLERANCE = 1e-3  # relative (of 1 + |value|): measured 1e-4 on the policy loss, 1e-6 on the rest
PROMPTS = [f"Tell me about thing number {i}." for i in range(8)]


def launch(job: dict, tmp: Path, processes: int, timeout: int = 600) -> dict:
    """Write the job, run it (plainly with 1 process, through accelerate launch with more), return its result."""
    tmp.mkdir(parents=True, exist_ok=True)
    job = {**job, "progress": str(tmp / "progress.jsonl"), "cancel": str(tmp / "cancel"),
           "result": str(tmp / "result.json")}
    job_path = tmp / "job.json"
    job_path.write_text(json.dumps(job))
    cmd = (launch_command(job_path, processes) if processes > 1
           else [sys.executable, "-m", "training.pipeline.launch", str(job_path)])
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "TORCH_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp / "result.json").read_text())
    progress = tmp / "progress.jsonl"
    result["progress"] = [json.loads(line) for line in progress.read_text().splitlines()] if progress.is_file() else []
    return result


def ppo_job(policy_dir, reward_dir, output_dir) -> dict:
    config = dict(policy=str(policy_dir), use_lora=False, num_iterations=1, batch_size=4, mini_batch_size=4,
                  ppo_epochs=2, max_new_tokens=6, rollout_chunk=2, temperature=1.0, top_p=1.0, seed=3, learning_rate=1e-2,
                  missing_eos_penalty_std=0.0)
    return {"kind": "ppo", "config": config, "policy": str(policy_dir), "reward_model": str(reward_dir),
            "judge": None, "base_model": None, "train_prompts": PROMPTS, "eval_prompts": [],
            "output_dir": str(output_dir), "manifest_extra": {}}


def close(a: float, b: float) -> bool:
    return abs(a - b) <= LOSS_TOLERANCE * (1 + max(abs(a), abs(b)))


def test_ppo_on_two_processes_matches_one_process_in_its_first_iteration(tmp_path, tiny_llama_dir, tiny_bert_dir):
    one = launch(ppo_job(tiny_llama_dir, tiny_bert_dir, tmp_path / "out1"), tmp_path / "one", 1)
    two = launch(ppo_job(tiny_llama_dir, tiny_bert_dir, tmp_path / "out2"), tmp_path / "two", 2)
    assert one["status"] == two["status"] == "completed"
    assert two["device"] == {"device/name": "cpu", "device/dtype": "float32", "device/processes": 2}
    first_one, first_two = one["history"][0], two["history"][0]
    for name in ("objective/reward", "objective/score", "response/length_mean", "objective/entropy", "losses/value",
                 "policy/approx_kl", "losses/policy"):
        assert close(first_one[name], first_two[name]), (name, first_one[name], first_two[name])
    assert first_one["losses/value"] > 0 and abs(first_one["losses/policy"]) > 0.1  # real losses, not zeros
    # the main process alone reports progress: one line per iteration
    assert [entry["step"] for entry in two["progress"]] == [1]


def test_reward_model_on_two_processes_is_saved_once(tmp_path, tiny_bert_dir, preference_rows):
    config = {"backbone": str(tiny_bert_dir), "max_steps": 1, "batch_size": 2, "logging_steps": 1, "max_length": 64}
    out = tmp_path / "registry" / "reward"
    result = launch({"kind": "reward", "config": config, "train_rows": preference_rows[:8],
                     "eval_rows": preference_rows[8:12], "output_dir": str(out)}, tmp_path / "job", 2)
    assert result["status"] == "completed" and Path(result["path"]) == out
    assert (out / "manifest.json").is_file() and result["manifest_sha256"]
    assert result["metrics"]["eval/n_pairs"] == 4.0
    assert sorted(p.name for p in out.parent.iterdir()) == ["reward"]  # no second copy, no leftover temp dir


def test_dpo_on_two_processes_is_saved_once(tmp_path, tiny_llama_dir, preference_rows):
    config = {"policy": str(tiny_llama_dir), "max_steps": 1, "batch_size": 2, "logging_steps": 1, "max_length": 96}
    out = tmp_path / "registry" / "dpo"
    result = launch({"kind": "dpo", "config": config, "train_rows": preference_rows[:8],
                     "eval_rows": preference_rows[8:10], "output_dir": str(out)}, tmp_path / "job", 2)
    assert result["status"] == "completed" and Path(result["path"]) == out
    assert (out / "manifest.json").is_file() and result["manifest_sha256"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["dpo"]
    assert result["progress"], "the main process reports DPO's steps"


def test_cancel_flag_stops_every_process_and_saves_nothing(tmp_path, tiny_llama_dir, tiny_bert_dir):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "cancel").touch()  # asked to stop before it began
    result = launch(ppo_job(tiny_llama_dir, tiny_bert_dir, tmp_path / "out"), job_dir, 2)
    assert result["status"] == "cancelled"
    assert not (tmp_path / "out").exists()


def test_device_choice_on_this_cpu_is_fp32_and_threads_follow_torch_threads(monkeypatch):
    from training.pipeline.devices import choose_device, torch_threads

    choice = choose_device()
    assert (choice.device, choice.dtype, choice.mixed_precision) == ("cpu", "float32", "no")
    monkeypatch.setenv("TORCH_THREADS", "4")
    assert torch_threads() == 4 and torch_threads(processes=2) == 2 and torch_threads(processes=8) == 1
    monkeypatch.delenv("TORCH_THREADS")
    assert torch_threads() == max(1, (os.cpu_count() or 1) - 1 if (os.cpu_count() or 1) > 2 else 1)


def test_the_worker_sets_passive_openmp_before_torch_loads():
    """The job worker's entry module sets the OpenMP policy, and nothing has loaded torch before it."""
    env = {k: v for k, v in os.environ.items() if k not in {"OMP_WAIT_POLICY", "OMP_NUM_THREADS", "TORCH_THREADS"}}
    code = ("import os, sys, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings.base'); "
            "django.setup(); import training.tasks; "
            "print(os.environ['OMP_WAIT_POLICY'], os.environ['OMP_NUM_THREADS'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**env, "TORCH_THREADS": "3"},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["PASSIVE", "3", "False"], out.stderr[-2000:]
