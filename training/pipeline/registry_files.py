"""The registry's on-disk format: a model directory plus a manifest, written all at once.

A registered model is an ordinary Hugging Face directory (config, `*.safetensors`, tokenizer files) plus a
`manifest.json` holding the sha256 and size of every other file in it. Directories are written next to their
destination and renamed into place, so the registry never holds a half-written model; loading verifies the
manifest first, so a changed, missing or added file is refused before any weight is read. Nothing here
writes or accepts pickle files, and no tensor that is NaN or infinite is ever registered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

# Files that would be unpickled by some loader: never written into, nor accepted from, the registry.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


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


def non_finite_tensors(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding any NaN or infinity."""
    return [
        name
        for name, tensor in named_tensors
        if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all())
    ]


def _refuse_non_finite(names: list[str], where: str) -> None:
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ValueError(f"refusing to register {where}: non-finite (NaN or inf) values in {shown}")


def _check_safetensors_finite(model_dir: Path) -> None:
    from safetensors import safe_open

    for name in _model_files(model_dir):
        if name.endswith(".safetensors"):
            with safe_open(model_dir / name, "pt") as weights:
                bad = non_finite_tensors((key, weights.get_tensor(key)) for key in weights.keys())
            _refuse_non_finite([f"{name}:{key}" for key in bad], "the model")


def save_model_atomic(save_fn: Callable[[Path], None], dest: Path, metadata: dict[str, Any]) -> str:
    """Write a model directory at `dest` all at once; return its manifest sha256.

    `save_fn(tmp_dir)` writes the files (e.g. `model.save_pretrained` + `tokenizer.save_pretrained`) into a
    temporary directory beside `dest`; then the files are checked (no pickle, at least one safetensors file,
    every tensor finite), the manifest is written, everything is fsynced and the directory is renamed into
    place. If anything fails the temporary directory is removed: `dest` either holds a whole, verified model
    or does not exist. An existing `dest` is never overwritten (FileExistsError).
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; registered models are never overwritten")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp_dir.mkdir()
    try:
        save_fn(tmp_dir)
        _check_written_files(tmp_dir)
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


def _check_written_files(tmp_dir: Path) -> None:
    names = _model_files(tmp_dir)
    pickles = [name for name in names if name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ValueError(f"refusing to register pickle file(s) {', '.join(pickles)}: save safetensors only")
    if not any(name.endswith(".safetensors") for name in names):
        raise ValueError(f"save_fn wrote no *.safetensors file into {tmp_dir}")
    _check_safetensors_finite(tmp_dir)


def save_pretrained_atomic(model, tokenizer, dest: Path, metadata: dict[str, Any]) -> str:
    """`save_model_atomic` for a transformers model and its tokenizer (safetensors; the usual case).

    A model with any NaN or infinite weight is refused (ValueError) before anything is written.
    """
    _refuse_non_finite(non_finite_tensors(model.state_dict().items()), "the model")

    def save(tmp_dir: Path) -> None:
        model.save_pretrained(tmp_dir, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp_dir)

    return save_model_atomic(save, dest, metadata)
