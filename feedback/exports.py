"""Preference exports in TRL's format, and the PreferenceSnapshots that pin what they hold.

    judgements (filtered) ─▶ snapshot row (judgement ids + sha256) ─▶ per task: pairs with consensus
        ─▶ rows {prompt, chosen, rejected, margin, agreement, n_judgements, prompt_id, chosen_model,
                 rejected_model, snapshot, split} ─▶ JSONL / Parquet / Hugging Face datasets + README.md card

Rows are produced task by task from a server-side cursor, so memory stays flat however many pairs
there are. The split is by prompt (a hash of the prompt id), so no prompt is on both sides.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from core.models import AuditEvent
from feedback.models import Adjudication, ComparisonTask, Completion, Judgement, Membership, Prompt
from training.models import PreferenceSnapshot

FORMATS = ("jsonl", "parquet", "hf")
TASKS_PER_BATCH = 500
DEFAULT_TRUST_THRESHOLD = 0.5


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


def split_of(prompt_key: str, *, test_fraction: float, seed: int = 0) -> str:
    """'test' for a stable share of prompts, decided by a hash of the prompt, else 'train'."""
    if test_fraction <= 0:
        return "train"
    digest = hashlib.sha256(f"{seed}:{prompt_key}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def _judgements(project, filters: ExportFilters):
    qs = Judgement.objects.filter(task__project=project, task__is_gold=False)
    if filters.only_trusted:
        trusted = Membership.objects.filter(project=project, trust__gte=filters.trust_threshold).values("user_id")
        qs = qs.filter(annotator_id__in=trusted)
    if filters.since_snapshot is not None:
        previous = PreferenceSnapshot.objects.filter(pk=filters.since_snapshot, project=project).first()
        if previous is None:
            raise ValidationError({"since_snapshot": f"No snapshot {filters.since_snapshot} in this project."})
        qs = qs.filter(pk__gt=previous.counts.get("max_judgement_id", 0))
    return qs


@transaction.atomic
def create_snapshot(*, project, filters: ExportFilters | None = None, actor=None, write_files: bool = True) -> PreferenceSnapshot:
    """Pin the judgements an export holds (ids + sha256 of ids and rankings), then write its files.

    The same judgements give the same sha256, whenever and wherever the snapshot is taken.
    """
    filters = filters or ExportFilters()
    digest = hashlib.sha256()
    id_ranges: list[list[int]] = []  # runs [first, last] of consecutive ids: compact for a million judgements
    count = 0
    for judgement_id, ranking in _judgements(project, filters).order_by("id").values_list("id", "ranking").iterator(chunk_size=5000):
        count += 1
        if id_ranges and id_ranges[-1][1] == judgement_id - 1:
            id_ranges[-1][1] = judgement_id
        else:
            id_ranges.append([judgement_id, judgement_id])
        digest.update(json.dumps([judgement_id, ranking], separators=(",", ":")).encode())
    snapshot = PreferenceSnapshot.objects.create(
        project=project, created_by=actor if getattr(actor, "is_authenticated", False) else None,
        judgement_ids=id_ranges, filters=filters.as_dict(), sha256=digest.hexdigest(),
        counts={"judgements": count, "max_judgement_id": id_ranges[-1][1] if id_ranges else 0},
    )
    from core.audit import record_audit

    record_audit(actor=actor, event_type=AuditEvent.Type.PREFERENCES_EXPORTED, project=project,
                 target=f"snapshot:{snapshot.pk}", extra={"filters": filters.as_dict(), "judgements": count})
    from core.events import announce

    announce(event="snapshot.created", project=project, payload={
        "snapshot": snapshot.pk, "project": project.slug, "sha256": snapshot.sha256, "judgements": count,
    })
    if write_files:
        out = Path(settings.EXPORT_DIR) / f"snapshot-{snapshot.pk}"
        stats = write_export(snapshot, out, fmt="jsonl")
        snapshot.path = str(out)
        snapshot.counts = {**snapshot.counts, **stats.counts()}
        snapshot.agreement = stats.mean_agreement()
        snapshot.save(update_fields=["path", "counts", "agreement"])
    return snapshot


def _task_batches(snapshot: PreferenceSnapshot) -> Iterator[list[tuple[int, list]]]:
    """(task_id, [(annotator_id, ranking, flags), …]) in task order, a batch of tasks at a time."""
    filters = ExportFilters(**{**snapshot.filters, "models": tuple(snapshot.filters.get("models", ()))})
    max_id = snapshot.counts.get("max_judgement_id", 0)
    rows = (
        _judgements(snapshot.project, filters).filter(pk__lte=max_id)
        .order_by("task_id", "id").values_list("task_id", "annotator_id", "ranking", "flags").iterator(chunk_size=5000)
    )
    grouped = ((task_id, [(a, r, f) for _, a, r, f in group]) for task_id, group in itertools.groupby(rows, key=lambda r: r[0]))
    while batch := list(itertools.islice(grouped, TASKS_PER_BATCH)):
        yield batch


@dataclass
class ExportStats:
    pairs: Counter = field(default_factory=Counter)  # per split
    # One bit per prompt pk and split: distinct prompts of a million-row export in a few hundred KiB.
    prompts: dict = field(default_factory=lambda: {"train": bytearray(), "test": bytearray()})
    judgements: int = 0
    ties: int = 0
    agreement_sum: float = 0.0
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
        self.agreement_sum += row["agreement"]
        self.chosen_models[row["chosen_model"] or "?"] += 1
        chosen_len, rejected_len = len(_text(row["chosen"])), len(_text(row["rejected"]))
        if len(self.chosen_lengths) < 100_000:  # a bounded sample for the card's statistics
            self.chosen_lengths.append(chosen_len)
            self.rejected_lengths.append(rejected_len)
        if chosen_len != rejected_len:
            self.length_decided += 1
            self.longer_wins += chosen_len > rejected_len

    def mean_agreement(self) -> float | None:
        total = sum(self.pairs.values())
        return self.agreement_sum / total if total else None

    def counts(self) -> dict:
        return {
            "pairs": sum(self.pairs.values()), "train_pairs": self.pairs["train"], "test_pairs": self.pairs["test"],
            "train_prompts": _bits(self.prompts["train"]), "test_prompts": _bits(self.prompts["test"]),
            "tied_pairs": self.ties, "judgements_used": self.judgements,
        }


@dataclass(frozen=True)
class PairConsensus:
    chosen: int | None  # None: the judges tie overall (no consensus direction)
    rejected: int | None
    margin: float  # |weighted wins - weighted losses| / total weight, in [0, 1]
    agreement: float  # share of the judges whose vote matches the consensus, in [0, 1]
    n_judgements: int


def consensus_pairs(votes: list[tuple[list[list[int]], float]], *, adjudicated_ranking=None) -> list[PairConsensus]:
    """Trust-weighted consensus of every pair of a task from its rankings [(ranking, trust), …].

    A reviewer's adjudicated ranking, when there is one, decides the direction; the annotators'
    agreement with it is still reported.
    """
    from feedback import quality

    per_pair: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for ranking, weight in votes:
        for a, b, outcome in quality.pairs_from_ranking(ranking):
            per_pair.setdefault((a, b), []).append((outcome, weight))
    decided = {}
    if adjudicated_ranking:
        decided = {(a, b): outcome for a, b, outcome in quality.pairs_from_ranking(adjudicated_ranking)}
    result = []
    for (a, b), pair_votes in sorted(per_pair.items()):
        weight_a = sum(w for o, w in pair_votes if o > 0)
        weight_b = sum(w for o, w in pair_votes if o < 0)
        total = sum(w for _, w in pair_votes)
        direction = decided.get((a, b), (weight_a > weight_b) - (weight_a < weight_b))
        agreeing = sum(1 for o, _ in pair_votes if o == direction)
        margin = abs(weight_a - weight_b) / total if total else 0.0
        if direction == 0:
            result.append(PairConsensus(None, None, margin, agreeing / len(pair_votes), len(pair_votes)))
        else:
            chosen, rejected = (a, b) if direction > 0 else (b, a)
            result.append(PairConsensus(chosen, rejected, margin, agreeing / len(pair_votes), len(pair_votes)))
    return result


def consensus_ranking(rankings: list[list[list[int]]]) -> list[list[int]]:
    """A full ranking from several: completions ordered by their mean position (Borda); equal means tie."""
    positions: dict[int, list[int]] = {}
    for ranking in rankings:
        for rank, group in enumerate(ranking):
            for cid in group:
                positions.setdefault(cid, []).append(rank)
    by_mean: dict[float, list[int]] = {}
    for cid, ranks in positions.items():
        by_mean.setdefault(round(sum(ranks) / len(ranks), 6), []).append(cid)
    return [sorted(by_mean[m]) for m in sorted(by_mean)]


def _bits(bitmap: bytearray) -> int:
    return int.from_bytes(bitmap, "little").bit_count() if bitmap else 0


def _text(value) -> str:
    return value if isinstance(value, str) else "\n".join(m.get("content", "") for m in value)


def iter_rows(snapshot: PreferenceSnapshot, stats: ExportStats | None = None) -> Iterator[dict]:
    """Every preference pair of the snapshot, as TRL-format rows (plus our provenance columns)."""
    filters = snapshot.filters
    models = set(filters.get("models") or ())
    # TRL picks text or chat from the first row, so one export holds one shape: when the project has
    # any chat prompt, every prompt is written as messages and every completion as an assistant turn.
    conversational = Prompt.objects.filter(project_id=snapshot.project_id, messages__isnull=False).exists()
    for batch in _task_batches(snapshot):
        task_ids = [task_id for task_id, _ in batch]
        tasks = dict(ComparisonTask.objects.filter(pk__in=task_ids).values_list("id", "prompt_id"))
        prompts = {p[0]: p for p in Prompt.objects.filter(pk__in=set(tasks.values())).values_list("id", "external_id", "text", "messages")}
        through = ComparisonTask.completions.through.objects.filter(comparisontask_id__in=task_ids)
        completion_ids = set(through.values_list("completion_id", flat=True))
        completions = {c[0]: c for c in Completion.objects.filter(pk__in=completion_ids).values_list("id", "text", "model_name")}
        adjudicated = dict(Adjudication.objects.filter(task_id__in=task_ids).values_list("task_id", "ranking"))
        trust = dict(Membership.objects.filter(project_id=snapshot.project_id).values_list("user_id", "trust"))
        for task_id, judgements in batch:
            flagged = any(flags for _, _, flags in judgements)
            if filters.get("drop_flagged") and flagged:
                continue
            if stats is not None:
                stats.judgements += len(judgements)
            prompt = prompts[tasks[task_id]]
            prompt_key = prompt[1] or f"prompt-{prompt[0]}"
            split = split_of(prompt_key, test_fraction=filters.get("test_fraction", 0.1), seed=filters.get("split_seed", 0))
            votes = [(ranking, trust.get(annotator, 1.0)) for annotator, ranking, _ in judgements]
            for pair in consensus_pairs(votes, adjudicated_ranking=adjudicated.get(task_id)):
                if pair.chosen is None:
                    if stats is not None:
                        stats.ties += 1
                    continue
                if pair.agreement < filters.get("min_agreement", 0.0):
                    continue
                chosen, rejected = completions[pair.chosen], completions[pair.rejected]
                if models and not {chosen[2], rejected[2]} <= models:
                    continue
                row = {
                    "prompt": (prompt[3] or [{"role": "user", "content": prompt[2]}]) if conversational else prompt[2],
                    "chosen": [{"role": "assistant", "content": chosen[1]}] if conversational else chosen[1],
                    "rejected": [{"role": "assistant", "content": rejected[1]}] if conversational else rejected[1],
                    "margin": round(pair.margin, 6), "agreement": round(pair.agreement, 6),
                    "n_judgements": pair.n_judgements, "prompt_id": prompt_key,
                    "chosen_model": chosen[2], "rejected_model": rejected[2], "snapshot": snapshot.pk, "split": split,
                }
                if stats is not None:
                    stats.add(row, prompt[0])
                yield row


def write_export(snapshot: PreferenceSnapshot, out_dir: Path, *, fmt: str = "jsonl", progress=None) -> ExportStats:
    """Write train/test files and a README.md dataset card into `out_dir`; returns the statistics.

    Files are written under temporary names and renamed at the end, so a crash never leaves a
    half-written export that looks complete.
    """
    if fmt not in FORMATS:
        raise ValidationError({"format": f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}."})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = ExportStats()
    rows = iter_rows(snapshot, stats)
    if progress is not None:
        rows = progress(rows)
    if fmt == "jsonl" or fmt == "hf":
        handles = {split: (out_dir / f".{split}.jsonl.partial").open("w", encoding="utf-8") for split in ("train", "test")}
        try:
            for row in rows:
                handles[row["split"]].write(json.dumps(row, ensure_ascii=False) + "\n")
        finally:
            for handle in handles.values():
                handle.close()
        for split in ("train", "test"):
            (out_dir / f".{split}.jsonl.partial").replace(out_dir / f"{split}.jsonl")
        if fmt == "hf":
            _jsonl_to_hf(out_dir)
    else:
        _write_parquet(rows, out_dir)
    (out_dir / "README.md").write_text(dataset_card(snapshot, stats, fmt), encoding="utf-8")
    return stats


def _write_parquet(rows: Iterable[dict], out_dir: Path, batch_rows: int = 10_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writers: dict[str, pq.ParquetWriter] = {}
    buffers: dict[str, list[dict]] = {"train": [], "test": []}

    def flush(split: str) -> None:
        if not buffers[split]:
            return
        # JSON-encode the text-or-messages columns so one schema holds both shapes.
        table = pa.Table.from_pylist([
            {**r, **{k: r[k] if isinstance(r[k], str) else json.dumps(r[k], ensure_ascii=False)
                     for k in ("prompt", "chosen", "rejected")}} for r in buffers[split]
        ])
        if split not in writers:
            writers[split] = pq.ParquetWriter(out_dir / f".{split}.parquet.partial", table.schema)
        writers[split].write_table(table.cast(writers[split].schema))
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
    for split in writers:
        (out_dir / f".{split}.parquet.partial").replace(out_dir / f"{split}.parquet")


def _jsonl_to_hf(out_dir: Path) -> None:
    import datasets

    files = {split: str(out_dir / f"{split}.jsonl") for split in ("train", "test") if (out_dir / f"{split}.jsonl").stat().st_size}
    dataset = datasets.load_dataset("json", data_files=files)
    dataset.save_to_disk(str(out_dir / "hf"))


def dataset_card(snapshot: PreferenceSnapshot, stats: ExportStats, fmt: str) -> str:
    counts = stats.counts()

    def describe(lengths: list[int]) -> str:
        if not lengths:
            return "–"
        return f"mean {statistics.fmean(lengths):.0f}, median {statistics.median(lengths):.0f}, max {max(lengths)}"

    agreement = stats.mean_agreement()
    longer = f"{stats.longer_wins / stats.length_decided:.1%}" if stats.length_decided else "–"
    models = "\n".join(f"| {name} | {n} |" for name, n in stats.chosen_models.most_common(20)) or "| – | 0 |"
    files = {"jsonl": "`train.jsonl`, `test.jsonl`", "parquet": "`train.parquet`, `test.parquet`",
             "hf": "`hf/` (`datasets.load_from_disk`), `train.jsonl`, `test.jsonl`"}[fmt]
    return f"""---
task_categories: [text-generation]
tags: [rlhf, preference, trl]
---
# Preference dataset: {snapshot.project.slug}, snapshot {snapshot.pk}

Pairs in TRL's preference format (`prompt`, `chosen`, `rejected`) with provenance columns `margin`,
`agreement`, `n_judgements`, `prompt_id`, `chosen_model`, `rejected_model`, `snapshot`, `split`.
Load with `datasets.load_dataset("json", data_files={{"train": "train.jsonl", "test": "test.jsonl"}})`;
it feeds `trl.RewardTrainer` and `trl.DPOTrainer` as it is. Files: {files}.

| figure | value |
|---|---|
| snapshot sha256 | `{snapshot.sha256}` |
| judgements in snapshot | {snapshot.counts.get("judgements", 0)} |
| judgements used | {counts["judgements_used"]} |
| pairs (train / test) | {counts["pairs"]} ({counts["train_pairs"]} / {counts["test_pairs"]}) |
| prompts (train / test) | {counts["train_prompts"]} / {counts["test_prompts"]} (split by prompt: none on both sides) |
| tied pairs (left out) | {counts["tied_pairs"]} |
| mean agreement | {"–" if agreement is None else f"{agreement:.3f}"} |
| longer completion chosen | {longer} |
| chosen length (chars) | {describe(stats.chosen_lengths)} |
| rejected length (chars) | {describe(stats.rejected_lengths)} |

Filters: `{json.dumps(snapshot.filters)}`

## Chosen completions by model
| model | pairs won |
|---|---|
{models}
"""


def snapshot_split_rows(snapshot: PreferenceSnapshot) -> tuple[list[dict], list[dict]]:
    """The snapshot's train and test rows (from its files when written, else computed)."""
    if snapshot.path and (Path(snapshot.path) / "train.jsonl").exists():
        def read(name):
            with (Path(snapshot.path) / name).open(encoding="utf-8") as fh:
                return [json.loads(line) for line in fh if line.strip()]
        return read("train.jsonl"), read("test.jsonl")
    train, test = [], []
    for row in iter_rows(snapshot):
        (train if row["split"] == "train" else test).append(row)
    return train, test


def stream_jsonl(snapshot: PreferenceSnapshot) -> Iterator[bytes]:
    """Rows as JSONL bytes for a streaming HTTP response (the client's disconnect just stops it)."""
    for row in iter_rows(snapshot):
        yield (json.dumps(row, ensure_ascii=False) + "\n").encode()


def recent_agreement(*, project, last_n: int = 2000) -> float | None:
    """Mean judge agreement over the consensus pairs of the last `last_n` judgements (None: no pair judged twice)."""
    recent = list(
        Judgement.objects.filter(task__project=project, task__is_gold=False).order_by("-id")
        .values_list("task_id", "annotator_id", "ranking")[:last_n]
    )
    trust = dict(Membership.objects.filter(project=project).values_list("user_id", "trust"))
    by_task: dict[int, list] = {}
    for task_id, annotator, ranking in recent:
        by_task.setdefault(task_id, []).append((ranking, trust.get(annotator, 1.0)))
    agreements = [
        pair.agreement for votes in by_task.values() if len(votes) > 1 for pair in consensus_pairs(votes)
    ]
    return sum(agreements) / len(agreements) if agreements else None
