"""The disk filling up while a model is saved leaves nothing behind in the registry."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_disk_full_while_saving_a_model_leaves_nothing_behind(tiny_bert_dir, tmp_path):
    """A real write limit (RLIMIT_FSIZE, the OS refuses to grow a file past 256 KiB) stands in for a full disk."""
    registry = tmp_path / "registry"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from training.pipeline.models import load_reward_model, load_tokenizer, save_pretrained_atomic
        tokenizer = load_tokenizer({str(tiny_bert_dir)!r})
        model = load_reward_model({str(tiny_bert_dir)!r}, tokenizer=tokenizer)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get the error (EFBIG) instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
        try:
            save_pretrained_atomic(model, tokenizer, __import__("pathlib").Path({str(registry / "reward-x")!r}), {{}})
        except Exception as exc:  # safetensors reports EFBIG as its own SafetensorError
            print("SAVE FAILED", type(exc).__name__, exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert "SAVE FAILED" in result.stdout and "File too large" in result.stdout, result.stderr[-2000:]
    assert not (registry / "reward-x").exists()
    assert list(registry.iterdir()) == []  # no half-written temporary directory either


