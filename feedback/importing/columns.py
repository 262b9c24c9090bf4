"""CSV and Parquet rows validated a column at a time (pyarrow compute), so the usual row costs no per-field Python.

A batch of rows becomes Arrow string columns; vectorised checks mark each row *plain* when it surely passes
`readers.clean_row` unchanged (text present, no NUL, within length, not a chat, no metadata, 0 or 2–4
completions). Plain rows are built directly; every other row goes to the per-row path, which decides and
words the error exactly as before. The screen may send a good row the slow way, never a bad row the fast way.
"""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from feedback.importing.rows import (
    MAX_COMPLETION_CHARS, MAX_EXTERNAL_ID_CHARS, MAX_MODEL_NAME_CHARS, MAX_PROMPT_CHARS, CompletionRow, PromptRow,
    completion_hash, text_hash,
)

COMPLETION_SLOTS = 4
KNOWN_COLUMNS = ("id", "prompt", "metadata", *(f"{kind}_{k}" for k in range(1, COMPLETION_SLOTS + 1)
                                               for kind in ("completion", "model")))
# A letter or digit: never whitespace to Python's str.strip (RE2's \S is ASCII-only, so not used).
HAS_WORD = r"[\pL\pN]"
# Python's whitespace is a subset of these; a prompt matching may be a JSON chat, so it goes the per-row way.
MAY_BE_CHAT = r"^[\t-\r\x{1c}-\x{1f}\x{85}\p{Z}]*\["


def _text_column(table: pa.Table, name: str):
    """The column as a plain string array; None when absent or all null; False when not text."""
    if name not in table.column_names:
        return None
    column = table.column(name).combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_null(column.type):
        return None
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return False
    return column


def _as_list(column: pa.ChunkedArray) -> list:
    """The column's values as Python objects. A dictionary column (how Parquet strings are read,
    `limits.dictionary_columns`) is decoded first, one column at a time: `to_pylist` on a dictionary
    array builds each value through Python objects, about 15× slower. Its decoded size was checked against
    the limit before (`limits.decoded_bytes`)."""
    if pa.types.is_dictionary(column.type):
        return column.combine_chunks().dictionary_decode().to_pylist()
    return column.to_pylist()


def _fits(column, limit: int, *, required: bool):
    """True where the value has no NUL, is within `limit` characters and (if required) is not blank."""
    ok = pc.and_(pc.invert(pc.match_substring(column, "\x00")), pc.less_equal(pc.utf8_length(column), limit))
    if required:
        ok = pc.and_(ok, pc.match_substring_regex(column, HAS_WORD))
    return ok


def _present(column):
    return pc.and_(pc.is_valid(column), pc.greater(pc.utf8_length(column), 0))


def plain_mask(table: pa.Table) -> list[bool]:
    """Per row: True when the row surely validates as a plain-text prompt with plain completions."""
    n = table.num_rows
    columns = {name: _text_column(table, name) for name in KNOWN_COLUMNS}
    if any(c is False for c in columns.values()) or columns["prompt"] is None:
        return [False] * n
    prompt = columns["prompt"]
    ok = pc.and_(_fits(prompt, MAX_PROMPT_CHARS, required=True), pc.invert(pc.match_substring_regex(prompt, MAY_BE_CHAT)))
    if columns["id"] is not None:
        ok = pc.and_(ok, pc.or_(pc.is_null(columns["id"]), _fits(columns["id"], MAX_EXTERNAL_ID_CHARS, required=False)))
    if columns["metadata"] is not None:
        ok = pc.and_(ok, pc.invert(_present(columns["metadata"])))
    count = pa.array([0] * n, pa.int64())
    for k in range(1, COMPLETION_SLOTS + 1):
        text, model = columns[f"completion_{k}"], columns[f"model_{k}"]
        if model is not None:
            ok = pc.and_(ok, pc.or_(pc.is_null(model), _fits(model, MAX_MODEL_NAME_CHARS, required=False)))
        if text is None:
            continue
        present = _present(text)
        ok = pc.and_(ok, pc.or_(pc.invert(present), _fits(text, MAX_COMPLETION_CHARS, required=True)))
        count = pc.add(count, pc.cast(present, pa.int64()))
    ok = pc.and_(ok, pc.not_equal(count, 1))
    return pc.fill_null(ok, False).to_pylist()


def _plain_row(line: int, values: dict[str, list], i: int) -> PromptRow | None:
    """The PromptRow clean_row would build from row i, or None when its completions repeat (the slow path words it)."""
    completions = []
    for k in range(1, COMPLETION_SLOTS + 1):
        texts = values.get(f"completion_{k}")
        text = texts[i] if texts else None
        if text:
            models = values.get(f"model_{k}")
            model = (models[i] if models else "") or ""
            completion = CompletionRow(text=text, model=model)
            completion.__dict__["content_hash"] = completion_hash(text, model)
            completions.append(completion)
    if len({(c.text, c.model) for c in completions}) != len(completions):
        return None
    ids, text = values.get("id"), values["prompt"][i]
    row = PromptRow(line=line, external_id=((ids[i] if ids else None) or "").strip(), text=text, messages=None,
                    metadata={}, completions=tuple(completions))
    row.__dict__["content_hash"] = text_hash(text)
    return row


def tabular_rows(table: pa.Table, lines: list[int], values: dict[str, list] | None = None
                 ) -> Iterator[tuple[int, PromptRow | dict]]:
    """(line, PromptRow) for plain rows, (line, record dict) for the rest, in file order. `values`: the same
    columns as Python lists when the caller has them (CSV), else they are read from the table."""
    mask = plain_mask(table)
    if values is None:
        values = {name: _as_list(table.column(name)) for name in table.column_names}
    values = {name: column for name, column in values.items() if name in KNOWN_COLUMNS}
    names = list(values)
    for i, line in enumerate(lines):
        row = _plain_row(line, values, i) if mask[i] else None
        yield (line, row) if row is not None else (line, {name: values[name][i] for name in names})
