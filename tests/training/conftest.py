"""Fixtures of the training tests: the default models (bootstrapped once per suite into $MODEL_DIR, else
the repository's git-ignored `models/`), their tokenizers and tiny random models of the same architectures."""

import os
from pathlib import Path

import pytest

from training.pipeline.models import (
    DEFAULT_POLICY,
    DEFAULT_REWARD_BACKBONE,
    bootstrap_default_models,
    load_tokenizer,
    save_pretrained_atomic,
    tiny_causal_lm,
    tiny_reward_model,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return Path(os.environ.get("MODEL_DIR") or REPO_ROOT / "models")


@pytest.fixture(scope="session")
def default_models(model_dir) -> dict[str, Path]:
    return bootstrap_default_models(model_dir)


@pytest.fixture(scope="session")
def smollm2_dir(default_models) -> Path:
    return default_models[DEFAULT_POLICY]


@pytest.fixture(scope="session")
def minilm_dir(default_models) -> Path:
    return default_models[DEFAULT_REWARD_BACKBONE]


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    return load_tokenizer(smollm2_dir)


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_dir):
    return load_tokenizer(minilm_dir)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A registered, randomly initialised tiny Llama over SmolLM2's tokenizer (chat template included)."""
    dest = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    model = tiny_causal_lm(smollm2_tokenizer)
    save_pretrained_atomic(model, smollm2_tokenizer, dest, {"kind": "policy", "name": "tiny-llama"})
    return dest


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_tokenizer) -> Path:
    """A registered, randomly initialised tiny BERT reward model over MiniLM's tokenizer (no chat template)."""
    dest = tmp_path_factory.mktemp("tiny") / "tiny-bert"
    model = tiny_reward_model(minilm_tokenizer)
    save_pretrained_atomic(model, minilm_tokenizer, dest, {"kind": "reward_backbone", "name": "tiny-bert"})
    return dest


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """The tiny BERT as a trained reward model would be saved. A random head gives reward gaps of ~1e-5; scaled
    up 10⁴ times, which answers it is least sure about is clear."""
    import torch

    from training.pipeline.models import load_reward_model

    dest = tmp_path_factory.mktemp("tiny") / "tiny-reward"
    tokenizer = load_tokenizer(tiny_bert_dir)
    scorer = load_reward_model(tiny_bert_dir, tokenizer=tokenizer)
    with torch.no_grad():
        scorer.classifier.weight.mul_(1e4)
    save_pretrained_atomic(scorer, tokenizer, dest, {"kind": "reward"})
    return dest


@pytest.fixture
def capital_rows():
    """Import rows whose two completions either answer the question ("answers") or evade it ("evades")."""
    from tests.training.pipeline.conftest import make_preference_rows

    rows = []
    for i, row in enumerate(make_preference_rows(n_prompts=24, chat_share=0.0)[::2]):
        rows.append({"id": f"cap-{i}", "prompt": row["prompt"], "completions": [
            {"text": row["chosen"], "model": "answers"}, {"text": row["rejected"], "model": "evades"}]})
    return rows


@pytest.fixture
def tiny_backbone(settings, tmp_path, tiny_bert_dir) -> Path:
    """The tiny BERT copied inside a fresh MODEL_DIR: run settings accept only paths inside MODEL_DIR."""
    import shutil

    settings.MODEL_DIR = tmp_path / "models"
    settings.EXPORT_DIR = tmp_path / "exports"
    dest = settings.MODEL_DIR / "tiny-bert"
    shutil.copytree(tiny_bert_dir, dest)
    return dest
