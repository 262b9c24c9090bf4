"""A committed PreferenceSnapshot's judgements → preference rows in TRL's format, with the export's statistics.

    snapshot (judgement ids + sha256, committed by services.create_snapshot) ─▶ per task: pairs with
        consensus (feedback.quality) ─▶ rows {prompt, chosen, rejected, margin, agreement, n_judgements,
        confidence, prompt_id, chosen_model, rejected_model, snapshot, split}

Rows are produced task by task from a server-side cursor, so memory stays flat however many pairs
there are. The split is by prompt (a hash of `Prompt.split_key`), so no prompt is on both sides. Nothing
here writes to the database: the snapshot row, its state and its stored rows belong to `services.snapshots`,
and every reader of a snapshot's rows reads the stored ones there (`stored_lines`, `stored_rows`, `split_rows`).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterator

from django.core.exceptions import ValidationError

from feedback import quality, selectors
from feedback.models import PreferenceSnapshot
from feedback.selectors.exports import CompletionInfo, ExportBatch, PromptInfo

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
