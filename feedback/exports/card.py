"""The README.md dataset card of an export: what the rows hold, how to load them, the export's figures."""

from __future__ import annotations

import json
import statistics

from feedback.exports.rows import SPLITS, ExportStats
from feedback.models import PreferenceSnapshot


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
