"""Prompt files in: reading and validating JSONL, CSV and Parquet into rows, before anything is written
(`services.import_prompts` writes them, all or nothing).

- `readers`: a file (or decoded API rows) → validated PromptRows, every problem named by line and field
  (FORMATS, detect_format, iter_rows, read_rows, read_rows_from_objects, clean_row)
- `rows`: what a validated row is (PromptRow, CompletionRow), its limits and content hashes
- `columns`: CSV and Parquet rows validated a column at a time (pyarrow), the usual row without per-field Python
- `limits`: how much a file may hold (ImportLimits, from settings), checked before anything is decoded further

The names below are importable from here (`from feedback import importing; importing.read_rows(...)`); `columns`
is imported only by the readers that need it, so pyarrow loads with the first CSV or Parquet file.
"""

from feedback.importing.limits import AtLine, ImportLimits, RowError
from feedback.importing.readers import (
    FORMATS, ID_REPEATS, MAX_ERRORS_REPORTED, clean_prompt, clean_row, detect_format, iter_rows, messages_to_text,
    read_rows, read_rows_from_objects,
)
from feedback.importing.rows import (
    MAX_COMPLETION_CHARS, MAX_EXTERNAL_ID_CHARS, MAX_MODEL_NAME_CHARS, MAX_PROMPT_CHARS, CompletionRow, PromptRow,
    completion_hash, plain_json_row, text_hash,
)

__all__ = [
    "FORMATS", "ID_REPEATS", "MAX_COMPLETION_CHARS", "MAX_ERRORS_REPORTED", "MAX_EXTERNAL_ID_CHARS",
    "MAX_MODEL_NAME_CHARS", "MAX_PROMPT_CHARS", "AtLine", "CompletionRow", "ImportLimits", "PromptRow", "RowError",
    "clean_prompt", "clean_row", "completion_hash", "detect_format", "iter_rows", "messages_to_text",
    "plain_json_row", "read_rows", "read_rows_from_objects", "text_hash",
]
