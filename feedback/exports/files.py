"""An export's rows → files of one kind (JSONL, Parquet, or a Hugging Face DatasetDict), per split, with the
dataset card beside them. Files are written under `.partial` names and renamed once whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from django.core.exceptions import ValidationError

from feedback.exports.card import dataset_card
from feedback.exports.rows import SPLITS, ExportStats, iter_rows
from feedback.models import PreferenceSnapshot

FORMATS = ("jsonl", "parquet", "hf")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValidationError({"format": f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}."})


def write_export(snapshot: PreferenceSnapshot, out_dir: Path, *, fmt: str = "jsonl", progress=None,
                 rows: Iterable[dict] | None = None, stats: ExportStats | None = None) -> ExportStats:
    """Write train/test files and a README.md dataset card into `out_dir`; returns the statistics.
    `rows` and `stats`: the snapshot's stored rows and the statistics gathered when they were made
    (`services.export_preferences` passes both); without them the rows are computed now.

    Files are written under temporary `.partial` names and renamed at the end; when anything fails
    (a full disk, a bad row) the partial files are removed and the error propagates, so a crash never
    leaves a half-written export that looks complete. Runs outside any transaction.
    """
    check_format(fmt)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = stats if stats is not None else ExportStats()
    rows = iter_rows(snapshot, stats) if rows is None else rows
    if progress is not None:
        rows = progress(rows)
    try:
        if fmt == "parquet":
            _write_parquet(rows, out_dir)
        else:
            _write_jsonl(rows, out_dir)
            if fmt == "hf":
                _jsonl_to_hf(out_dir, stats.splits_with_rows())
        (out_dir / "README.md").write_text(dataset_card(snapshot, stats, fmt), encoding="utf-8")
    except BaseException:
        remove_partial_files(out_dir)
        raise
    return stats


def remove_partial_files(out_dir: Path) -> None:
    for partial in Path(out_dir).glob(".*.partial"):
        partial.unlink(missing_ok=True)


def _write_jsonl(rows: Iterable[dict], out_dir: Path) -> None:
    handles = {split: (out_dir / f".{split}.jsonl.partial").open("w", encoding="utf-8") for split in SPLITS}
    try:
        for row in rows:
            handles[row["split"]].write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        for handle in handles.values():
            handle.close()
    for split in SPLITS:
        (out_dir / f".{split}.jsonl.partial").replace(out_dir / f"{split}.jsonl")


def _parquet_schema():
    """One fixed schema, so every split's file (an empty one too) has the same, loadable columns."""
    import pyarrow as pa

    text = ("prompt", "chosen", "rejected", "prompt_id", "chosen_model", "rejected_model", "split")
    types = {"margin": pa.float64(), "agreement": pa.float64(), "n_judgements": pa.int64(), "confidence": pa.float64(),
             "snapshot": pa.int64()}
    order = ("prompt", "chosen", "rejected", "margin", "agreement", "n_judgements", "confidence", "prompt_id",
             "chosen_model", "rejected_model", "snapshot", "split")
    return pa.schema([(name, pa.string() if name in text else types[name]) for name in order])


def _write_parquet(rows: Iterable[dict], out_dir: Path, batch_rows: int = 10_000) -> None:
    """Every split gets a file, an empty one (valid, with the schema) when it has no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    writers = {split: pq.ParquetWriter(out_dir / f".{split}.parquet.partial", schema) for split in SPLITS}
    buffers: dict[str, list[dict]] = {split: [] for split in SPLITS}

    def flush(split: str) -> None:
        if not buffers[split]:
            return
        # JSON-encode the text-or-messages columns so one schema holds both shapes.
        writers[split].write_table(pa.Table.from_pylist([
            {**r, **{k: r[k] if isinstance(r[k], str) else json.dumps(r[k], ensure_ascii=False)
                     for k in ("prompt", "chosen", "rejected")}} for r in buffers[split]
        ], schema=schema))
        buffers[split].clear()

    try:
        for row in rows:
            buffers[row["split"]].append(row)
            if len(buffers[row["split"]]) >= batch_rows:
                flush(row["split"])
        for split in buffers:
            flush(split)
    finally:
        for writer in writers.values():
            writer.close()
    for split in SPLITS:
        (out_dir / f".{split}.parquet.partial").replace(out_dir / f"{split}.parquet")


def _jsonl_to_hf(out_dir: Path, splits: list[str]) -> None:
    import datasets

    if not splits:  # no pairs at all: nothing a DatasetDict could hold
        return
    dataset = datasets.load_dataset("json", data_files={split: str(out_dir / f"{split}.jsonl") for split in splits})
    dataset.save_to_disk(str(out_dir / "hf"))
