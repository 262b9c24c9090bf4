"""Preference exports in TRL's format: a committed PreferenceSnapshot's rows → files.

    snapshot (judgement ids + sha256, committed by services.create_snapshot) ─▶ per task: pairs with
        consensus (feedback.quality) ─▶ rows {prompt, chosen, rejected, margin, agreement, n_judgements,
        confidence, prompt_id, chosen_model, rejected_model, snapshot, split} ─▶ JSONL / Parquet / Hugging Face + README.md

Rows are produced task by task from a server-side cursor, so memory stays flat however many pairs
there are. The split is by prompt (a hash of the prompt id), so no prompt is on both sides. Nothing
here writes to the database: the snapshot row, its state and its stored rows belong to `services.snapshots`,
and every reader of a snapshot's rows reads the stored ones there (`stored_lines`, `stored_rows`, `split_rows`).
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from django.core.exceptions import ValidationError

from feedback import quality, selectors
from feedback.models import PreferenceSnapshot
from feedback.quality import split_of  # noqa: F401  (kept importable here: training.jobs uses exports.split_of)
from feedback.selectors import CompletionInfo, ExportBatch, PromptInfo, recent_agreement  # noqa: F401  (same)

FORMATS = ("jsonl", "parquet", "hf")
TASKS_PER_BATCH = 500
DEFAULT_TRUST_THRESHOLD = 0.5
SPLITS = ("train", "test")


@dataclass(frozen=True)
class ExportFilters:
    """Which judgements and pairs an export holds; stored on its snapshot."""

    min_agreement: float = 0.0
    drop_flagged: bool = False
    only_trusted: bool = False
    trust_threshold: float = DEFAULT_TRUST_THRESHOLD
    since_snapshot: int | None = None
    models: tuple[str, ...] = ()
    test_fraction: float = 0.1
    split_seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValidationError({"min_agreement": "must be between 0 and 1"})
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValidationError({"test_fraction": "must be at least 0 and below 1"})
        if not 0.0 <= self.trust_threshold <= 1.0:
            raise ValidationError({"trust_threshold": "must be between 0 and 1"})

    def as_dict(self) -> dict:
        values = asdict(self)
        values["models"] = list(self.models)
        return values

    @classmethod
    def of(cls, snapshot: PreferenceSnapshot) -> "ExportFilters":
        known = {k: v for k, v in snapshot.filters.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "models": tuple(known.get("models", ()))})

    def judgements(self, project):
        """The judgements these filters admit (a queryset; raises ValidationError for an unknown since_snapshot)."""
        return selectors.judgements_in_scope(project=project, only_trusted=self.only_trusted,
                                             trust_threshold=self.trust_threshold, since_snapshot=self.since_snapshot)


def _task_batches(snapshot: PreferenceSnapshot, filters: ExportFilters) -> Iterator[list[tuple[int, list]]]:
    """(task_id, [(annotator_id, ranking, flags, confidence), …]) in task order, a batch of tasks at a time."""
    max_id = snapshot.counts.get("max_judgement_id", 0)
    rows = (
        filters.judgements(snapshot.project).filter(pk__lte=max_id)
        .order_by("task_id", "id").values_list("task_id", "annotator_id", "ranking", "flags", "confidence")
        .iterator(chunk_size=5000)
    )
    grouped = ((task_id, [row[1:] for row in group]) for task_id, group in itertools.groupby(rows, key=lambda r: r[0]))
    while batch := list(itertools.islice(grouped, TASKS_PER_BATCH)):
        yield batch


@dataclass
class ExportStats:
    pairs: Counter = field(default_factory=Counter)  # per split
    # One bit per prompt pk and split: distinct prompts of a million-row export in a few hundred KiB.
    prompts: dict = field(default_factory=lambda: {"train": bytearray(), "test": bytearray()})
    judgements: int = 0
    ties: int = 0
    tied: Counter = field(default_factory=Counter)  # per split: pairs the judges tie on (no row: TRL has no tie)
    # Leave-one-out agreement over every pair judged at least twice, tied pairs included: leaving the ties out
    # would keep only the pairs the judges agreed on and make chance look like agreement.
    agreement_sum: float = 0.0
    agreement_pairs: int = 0
    judged_once: int = 0  # pairs with a single judgement (and no review): their agreement is unknown
    chosen_models: Counter = field(default_factory=Counter)
    chosen_lengths: list = field(default_factory=list)
    rejected_lengths: list = field(default_factory=list)
    longer_wins: int = 0
    length_decided: int = 0

    def add(self, row: dict, prompt_pk: int) -> None:
        self.pairs[row["split"]] += 1
        bitmap = self.prompts[row["split"]]
        if len(bitmap) <= prompt_pk // 8:
            bitmap.extend(bytes(prompt_pk // 8 + 1 - len(bitmap) + 4096))
        bitmap[prompt_pk // 8] |= 1 << (prompt_pk % 8)
        self.add_agreement(row["agreement"])
        self.chosen_models[row["chosen_model"] or "?"] += 1
        chosen_len, rejected_len = len(_text(row["chosen"])), len(_text(row["rejected"]))
        if len(self.chosen_lengths) < 100_000:  # a bounded sample for the card's statistics
            self.chosen_lengths.append(chosen_len)
            self.rejected_lengths.append(rejected_len)
        if chosen_len != rejected_len:
            self.length_decided += 1
            self.longer_wins += chosen_len > rejected_len

    def add_agreement(self, agreement: float | None) -> None:
        if agreement is None:
            self.judged_once += 1
        else:
            self.agreement_sum += agreement
            self.agreement_pairs += 1

    def add_tie(self, pair: quality.PairConsensus, split: str) -> None:
        self.ties += 1
        self.tied[split] += 1
        self.add_agreement(pair.agreement)

    def splits_with_rows(self) -> list[str]:
        return [split for split in SPLITS if self.pairs[split]]

    def mean_agreement(self) -> float | None:
        """Mean leave-one-out agreement of the pairs judged twice or more, ties included (0.5: coin flips)."""
        return self.agreement_sum / self.agreement_pairs if self.agreement_pairs else None

    def counts(self) -> dict:
        return {
            "pairs": sum(self.pairs.values()), "train_pairs": self.pairs["train"], "test_pairs": self.pairs["test"],
            "train_prompts": _bits(self.prompts["train"]), "test_prompts": _bits(self.prompts["test"]),
            "tied_pairs": self.ties, "train_tied_pairs": self.tied["train"], "test_tied_pairs": self.tied["test"],
            "pairs_judged_once": self.judged_once, "judgements_used": self.judgements,
        }


def _bits(bitmap: bytearray) -> int:
    return int.from_bytes(bitmap, "little").bit_count() if bitmap else 0


def _text(value) -> str:
    return value if isinstance(value, str) else "\n".join(m.get("content", "") for m in value)


@dataclass(frozen=True)
class _RowShape:
    """How rows are spelled: TRL picks text or chat from the first row, so one export holds one shape."""

    conversational: bool
    snapshot_id: int

    def row(self, prompt: PromptInfo, chosen: CompletionInfo, rejected: CompletionInfo,
            pair: quality.PairConsensus, split: str, confidence: float | None = None) -> dict:
        if self.conversational:
            spelled = (prompt.messages or [{"role": "user", "content": prompt.text}],
                       [{"role": "assistant", "content": chosen.text}], [{"role": "assistant", "content": rejected.text}])
        else:
            spelled = (prompt.text, chosen.text, rejected.text)
        return {
            "prompt": spelled[0], "chosen": spelled[1], "rejected": spelled[2],
            "margin": round(pair.margin, 6), "agreement": None if pair.agreement is None else round(pair.agreement, 6),
            "n_judgements": pair.n_judgements,
            "confidence": confidence, "prompt_id": prompt.key, "chosen_model": chosen.model, "rejected_model": rejected.model,
            "snapshot": self.snapshot_id, "split": split,
        }


def iter_rows(snapshot: PreferenceSnapshot, stats: ExportStats | None = None,
              only_tasks: frozenset[int] | None = None) -> Iterator[dict]:
    """Every preference pair of the snapshot, as TRL-format rows (plus our provenance columns); with `only_tasks`,
    those of these tasks alone (an iterative-DPO round's)."""
    filters = ExportFilters.of(snapshot)
    stats = stats if stats is not None else ExportStats()
    # When the project has any chat prompt, every prompt is written as messages and every completion as a turn.
    shape = _RowShape(conversational=selectors.has_chat_prompts(project_id=snapshot.project_id), snapshot_id=snapshot.pk)
    for batch in _task_batches(snapshot, filters):
        if only_tasks is not None:
            batch = [(task_id, judgements) for task_id, judgements in batch if task_id in only_tasks]
            if not batch:
                continue
        context = selectors.export_batch(project_id=snapshot.project_id, task_ids=[task_id for task_id, _ in batch])
        for task_id, judgements in batch:
            if filters.drop_flagged and any(flags for _, _, flags, _ in judgements):
                continue
            stats.judgements += len(judgements)
            yield from _task_rows(task_id, judgements, context, filters, shape, stats)


def _task_rows(task_id: int, judgements: list, context: ExportBatch, filters: ExportFilters, shape: _RowShape,
               stats: ExportStats) -> Iterator[dict]:
    prompt = context.prompt_of_task[task_id]
    split = quality.split_of(prompt.key, test_fraction=filters.test_fraction, seed=filters.split_seed)
    votes = [(ranking, context.trust.get(annotator, 1.0)) for annotator, ranking, _, _ in judgements]
    given = [c for _, _, _, c in judgements if c is not None]
    confidence = round(sum(given) / len(given), 6) if given else None  # the judges' mean self-rated confidence
    for pair in quality.consensus_pairs(votes, adjudicated_ranking=context.adjudicated.get(task_id)):
        if pair.chosen is None:  # counted (card, snapshot counts), not written: TRL's preference rows have no tie
            stats.add_tie(pair, split)
            continue
        chosen, rejected = context.completions[pair.chosen], context.completions[pair.rejected]
        # A pair one judge saw has no measured agreement: min_agreement keeps it (n_judgements says how it was seen).
        if (pair.agreement is not None and pair.agreement < filters.min_agreement) or (filters.models and not {chosen.model, rejected.model} <= set(filters.models)):
            continue
        row = shape.row(prompt, chosen, rejected, pair, split, confidence)
        stats.add(row, prompt.pk)
        yield row


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


def load_command(fmt: str, splits: list[str]) -> str:
    """The card's code block: loads the export from its directory. It names only the splits that have
    rows (the `datasets` library refuses an empty data file), while every split's file is written."""
    if not splits:
        return "# This export holds no preference pairs yet: there is nothing to load."
    ext = "parquet" if fmt == "parquet" else "jsonl"
    files = ", ".join(f'"{split}": "{split}.{ext}"' for split in splits)
    builder = "parquet" if fmt == "parquet" else "json"
    command = f'import datasets\n\nds = datasets.load_dataset("{builder}", data_files={{{files}}})'
    if fmt == "hf":
        command += '\n# the same rows, saved as a DatasetDict:\nds_saved = datasets.load_from_disk("hf")'
    return command


def ties_note(counts: dict) -> str:
    """What the card says about ties: TRL's preference format has no tie, so tied pairs have no row, and a test
    split without them holds only the pairs the judges could decide — the harder half of the data is missing."""
    tied, test_tied = counts.get("tied_pairs", 0), counts.get("test_tied_pairs", 0)
    if not tied:
        return ""
    decided_test = counts.get("test_pairs", 0)
    share = f"{test_tied / (test_tied + decided_test):.1%}" if test_tied + decided_test else "–"
    return (f"\n\n**Ties.** {tied} pairs the judges tied on (their trust-weighted votes cancel) have no row: "
            f"TRL's preference format has no tie. {test_tied} of them are test pairs ({share} of the test split's "
            f"judged pairs), so accuracy on `test` is measured on the pairs the judges could decide; report it with "
            f"this count. `agreement` (each judge against the other judges) averages over the ties too.")


def dataset_card(snapshot: PreferenceSnapshot, stats: ExportStats, fmt: str) -> str:
    counts = stats.counts()

    def describe(lengths: list[int]) -> str:
        if not lengths:
            return "–"
        return f"mean {statistics.fmean(lengths):.0f}, median {statistics.median(lengths):.0f}, max {max(lengths)}"

    agreement = stats.mean_agreement()
    longer = f"{stats.longer_wins / stats.length_decided:.1%}" if stats.length_decided else "–"
    models = "\n".join(f"| {name} | {n} |" for name, n in stats.chosen_models.most_common(20)) or "| – | 0 |"
    splits = stats.splits_with_rows()
    ext = "parquet" if fmt == "parquet" else "jsonl"
    files = ", ".join(f"`{split}.{ext}` ({stats.pairs[split]} pairs)" for split in SPLITS)
    if fmt == "hf" and splits:
        files = f"`hf/` (`datasets.load_from_disk`, splits {', '.join(splits)}), {files}"
    return f"""---
task_categories: [text-generation]
tags: [rlhf, preference, trl]
---
# Preference dataset: {snapshot.project.slug}, snapshot {snapshot.pk}

Pairs in TRL's preference format (`prompt`, `chosen`, `rejected`) with provenance columns `margin`,
`agreement` (leave-one-out: how well each judge's vote matches the other judges' consensus, averaged over the
pair's judges; 0.5 is chance, null when one judge saw the pair), `n_judgements`, `confidence` (the judges' mean self-rated confidence, 1–5, or null), `prompt_id`,
`chosen_model`, `rejected_model`, `snapshot`, `split`.
It feeds `trl.RewardTrainer` and `trl.DPOTrainer` as it is. Files: {files}; a split without pairs is
written as an empty file and left out of the load command. From this directory:{ties_note(counts)}

```python
{load_command(fmt, splits)}
```

| figure | value |
|---|---|
| snapshot sha256 | `{snapshot.sha256}` |
| judgements in snapshot | {snapshot.counts.get("judgements", 0)} |
| judgements used | {counts["judgements_used"]} |
| pairs (train / test) | {counts["pairs"]} ({counts["train_pairs"]} / {counts["test_pairs"]}) |
| prompts (train / test) | {counts["train_prompts"]} / {counts["test_prompts"]} (split by prompt: none on both sides) |
| tied pairs (train / test; no row) | {counts["tied_pairs"]} ({counts["train_tied_pairs"]} / {counts["test_tied_pairs"]}) |
| pairs judged once (agreement null) | {counts["pairs_judged_once"]} |
| mean agreement (leave-one-out, ties included; 0.5 = chance) | {"–" if agreement is None else f"{agreement:.3f}"} |
| longer completion chosen | {longer} |
| chosen length (chars) | {describe(stats.chosen_lengths)} |
| rejected length (chars) | {describe(stats.rejected_lengths)} |

Filters: `{json.dumps(snapshot.filters)}`

## Chosen completions by model
| model | pairs won |
|---|---|
{models}
"""
