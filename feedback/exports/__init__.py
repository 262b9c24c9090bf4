"""Preference exports in TRL's format: a committed PreferenceSnapshot's rows → files and a dataset card.

- `rows`: the snapshot's judgements → preference rows (ExportFilters, iter_rows) and their statistics (ExportStats)
- `files`: rows → JSONL / Parquet / Hugging Face files per split (FORMATS, write_export)
- `card`: the README.md dataset card (dataset_card, load_command)

The names below are importable from here (`from feedback import exports; exports.ExportFilters(...)`).
"""

from feedback.exports.card import dataset_card, load_command, ties_note
from feedback.exports.files import FORMATS, check_format, remove_partial_files, write_export
from feedback.exports.rows import (
    DEFAULT_TRUST_THRESHOLD, SPLITS, TASKS_PER_BATCH, ExportFilters, ExportStats, iter_rows,
)

__all__ = [
    "DEFAULT_TRUST_THRESHOLD", "FORMATS", "SPLITS", "TASKS_PER_BATCH", "ExportFilters", "ExportStats",
    "check_format", "dataset_card", "iter_rows", "load_command", "remove_partial_files", "ties_note", "write_export",
]
