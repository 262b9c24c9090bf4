"""Reading prompt files (JSONL, CSV, Parquet) into validated rows, before anything is written.

Every problem is reported with its line (JSONL/CSV: the line in the file; Parquet: the row number
starting at 1) and its field, and nothing is imported while any row is bad.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import IO, Iterator

from django.core.exceptions import ValidationError

from core.parsing import MAX_JSON_DEPTH, JSONTooDeep, refuse_constant, parse_bounded_float, parse_bounded_int, loads_bounded
from feedback.importing.limits import (
    PARQUET_DECODES_TOO_BIG, PARQUET_ROW_GROUP_UNREADABLE, PARQUET_THRIFT_CONTAINER_LIMIT,
    PARQUET_THRIFT_STRING_LIMIT, TOO_MANY_ROWS, AtLine, ImportLimits, RowError, bounded_lines,
    check_parquet_metadata, check_row_count, decode_line, decoded_bytes, dictionary_columns,
)
from feedback.importing.rows import (
    MAX_COMPLETION_CHARS, MAX_EXTERNAL_ID_CHARS, MAX_MODEL_NAME_CHARS, MAX_PROMPT_CHARS, CompletionRow, PromptRow,
    plain_json_row,
)

MAX_ERRORS_REPORTED = 20
ID_REPEATS = "line {line}: field 'id' {id!r} repeats line {first}"
ROLES = {"system", "user", "assistant", "tool"}
FORMATS = ("jsonl", "csv", "parquet")


def _clean_text(value, field_name: str, limit: int, *, required: bool = True) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN from pandas/pyarrow
        value = ""
    if not isinstance(value, str):
        raise RowError(field_name, f"must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise RowError(field_name, "must not contain NUL characters")
    if required and not value.strip():
        raise RowError(field_name, "must not be empty")
    if len(value) > limit:
        raise RowError(field_name, f"is longer than {limit} characters")
    return value


def messages_to_text(messages: list[dict]) -> str:
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def clean_prompt(value) -> tuple[str, list | None]:
    if isinstance(value, list):
        if not value:
            raise RowError("prompt", "chat must hold at least one message")
        messages = []
        for i, message in enumerate(value):
            if not isinstance(message, dict) or set(message) - {"role", "content"} or "role" not in message:
                raise RowError(f"prompt[{i}]", 'must be {"role": …, "content": …}')
            if message["role"] not in ROLES:
                raise RowError(f"prompt[{i}].role", f"must be one of {', '.join(sorted(ROLES))}")
            content = _clean_text(message.get("content"), f"prompt[{i}].content", MAX_PROMPT_CHARS)
            messages.append({"role": message["role"], "content": content})
        text = messages_to_text(messages)
        if len(text) > MAX_PROMPT_CHARS:
            raise RowError("prompt", f"is longer than {MAX_PROMPT_CHARS} characters")
        return text, messages
    return _clean_text(value, "prompt", MAX_PROMPT_CHARS), None


def clean_row(raw, line: int) -> PromptRow:
    """Validate one decoded row (a dict) into a PromptRow, or raise RowError naming the field."""
    if not isinstance(raw, dict):
        raise RowError("row", "must be a JSON object")
    unknown = set(raw) - {"id", "prompt", "completions", "metadata"}
    if unknown:
        raise RowError(sorted(unknown)[0], "is not a known field (expected id, prompt, completions, metadata)")
    if "prompt" not in raw:
        raise RowError("prompt", "is required")
    external_id = raw.get("id")
    if external_id is None:
        external_id = ""
    if isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    external_id = _clean_text(external_id, "id", MAX_EXTERNAL_ID_CHARS, required=False).strip()
    text, messages = clean_prompt(raw["prompt"])
    metadata = raw.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise RowError("metadata", "must be an object")
    completions_raw = raw.get("completions")
    completions_raw = [] if completions_raw is None else completions_raw
    if not isinstance(completions_raw, list):
        raise RowError("completions", "must be a list")
    if len(completions_raw) == 1 or len(completions_raw) > 4:
        raise RowError("completions", f"must hold 2 to 4 completions (or none), got {len(completions_raw)}")
    completions = []
    for i, item in enumerate(completions_raw):
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict) or set(item) - {"text", "model"}:
            raise RowError(f"completions[{i}]", 'must be {"text": …, "model": …}')
        completion_text = _clean_text(item.get("text"), f"completions[{i}].text", MAX_COMPLETION_CHARS)
        model = _clean_text(item.get("model") or "", f"completions[{i}].model", MAX_MODEL_NAME_CHARS, required=False)
        completions.append(CompletionRow(text=completion_text, model=model))
    if len({(c.text, c.model) for c in completions}) != len(completions):
        raise RowError("completions", "holds the same completion twice")
    return PromptRow(line=line, external_id=external_id, text=text, messages=messages, metadata=metadata,
                     completions=tuple(completions))


def _jsonl_rows(stream: IO[bytes], limits: ImportLimits) -> Iterator[tuple[int, object]]:
    for line_no, raw_line in bounded_lines(stream, limits):
        line = decode_line(line_no, raw_line)
        if not line.strip():
            continue
        try:
            value = _loads_row(line)
            yield line_no, plain_json_row(value, line_no) or value
        except JSONTooDeep as exc:
            raise AtLine(line_no, RowError("row", f"is {exc}")) from None
        except ValueError as exc:  # JSONDecodeError, numbers out of range
            raise AtLine(line_no, RowError("row", f"is not valid JSON ({getattr(exc, 'msg', exc)})")) from None


_ROW_DECODER = json.JSONDecoder(parse_int=parse_bounded_int, parse_float=parse_bounded_float, parse_constant=refuse_constant)


def _loads_row(line: str):
    """loads_bounded(line), faster for the usual row: one shared decoder, and no depth walk when the line
    holds too few brackets to nest past the limit (depth can never exceed the count of '{' and '[')."""
    if line.count("{") + line.count("[") > MAX_JSON_DEPTH or line.startswith("\ufeff"):
        return loads_bounded(line)
    return _ROW_DECODER.decode(line)


def _csv_value_to_prompt(value: str):
    # A CSV cell may hold a chat as JSON; anything else is plain text.
    stripped = (value or "").strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            parsed = loads_bounded(stripped)
        except ValueError:  # not JSON, too deep, numbers out of range: plain text
            return value
        if isinstance(parsed, list) and all(isinstance(m, dict) for m in parsed):
            return parsed
    return value


def _tabular_to_raw(record: dict) -> dict:
    missing = {"prompt"} - set(record)
    if missing:
        raise RowError("prompt", "column is required")
    completions = []
    for k in range(1, 5):
        text = record.get(f"completion_{k}")
        if text is None or text == "" or (isinstance(text, float) and text != text):
            continue
        completions.append({"text": text, "model": record.get(f"model_{k}") or ""})
    metadata = record.get("metadata") or {}
    if isinstance(metadata, str):
        try:
            metadata = loads_bounded(metadata) if metadata.strip() else {}
        except ValueError as exc:
            raise RowError("metadata", f"is not valid JSON ({getattr(exc, 'msg', exc)})") from None
    prompt = record["prompt"]
    if isinstance(prompt, str):
        prompt = _csv_value_to_prompt(prompt)
    raw = {"prompt": prompt, "completions": completions, "metadata": metadata}
    if record.get("id") not in (None, ""):
        raw["id"] = record["id"]
    return raw


def _decoded_lines(stream: IO[bytes], limits: ImportLimits) -> Iterator[str]:
    for line_no, raw in bounded_lines(stream, limits):
        yield decode_line(line_no, raw)


CSV_BATCH_ROWS = 5000


def _csv_batch(header: list[str], records: list[list[str]], lines: list[int]):
    """Rows of one CSV batch, validated column-wise (`importing.columns`); the last of repeated header names wins."""
    import pyarrow as pa

    from feedback.importing.columns import KNOWN_COLUMNS, tabular_rows

    index = {name: i for i, name in enumerate(header) if name in KNOWN_COLUMNS}
    values = {name: [r[i] if i < len(r) else None for r in records] for name, i in index.items()}
    table = pa.table({name: pa.array(column, pa.string()) for name, column in values.items()}) if values else None
    return tabular_rows(table if table is not None else pa.table({"": pa.nulls(len(records))}), lines, values)


def _csv_rows(stream: IO[bytes], limits: ImportLimits) -> Iterator[tuple[int, object]]:
    """Like csv.DictReader (blank lines skipped, missing cells None), a batch of rows at a time."""
    csv.field_size_limit(limits.max_csv_field_chars)
    reader = csv.reader(_decoded_lines(stream, limits))
    header, records, lines, stop, last_read = None, [], [], None, 0
    try:
        for record in reader:
            last_read = reader.line_num
            if header is None:
                header = record
                continue
            if not record:
                continue
            if len(record) > len(header):
                stop = AtLine(reader.line_num, RowError("row", "has more cells than the header"))
                break
            records.append(record)
            lines.append(reader.line_num)
            if len(records) >= CSV_BATCH_ROWS:
                yield from _csv_batch(header, records, lines)
                records, lines = [], []
    except csv.Error as exc:
        stop = AtLine(last_read + 1, RowError("row", f"is not valid CSV ({exc})"))
    except AtLine as exc:
        stop = exc
    if records:
        yield from _csv_batch(header, records, lines)
    if stop:
        raise stop


def _open_parquet(stream: IO[bytes], limits: ImportLimits):
    """The footer only: checked against the limits before any page is read; strings come as dictionaries."""
    import pyarrow.parquet as pq

    options = {"thrift_string_size_limit": PARQUET_THRIFT_STRING_LIMIT,
               "thrift_container_size_limit": PARQUET_THRIFT_CONTAINER_LIMIT}
    try:
        footer = pq.ParquetFile(stream, **options)
        metadata = footer.metadata
        check_parquet_metadata(metadata, limits)
        return pq.ParquetFile(stream, metadata=metadata, read_dictionary=dictionary_columns(footer.schema_arrow),
                              **options)
    except RowError:
        raise
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise RowError("file", f"is not a readable Parquet file ({str(exc)[:200]})") from None


def _parquet_rows(stream: IO[bytes], limits: ImportLimits) -> Iterator[tuple[int, object]]:
    """Limits from the footer first (check_parquet_metadata), then one row group at a time, each checked for
    its decoded size before it becomes Python objects."""
    import pyarrow as pa

    from feedback.importing.columns import tabular_rows

    table = _open_parquet(stream, limits)
    line_no, budget = 0, limits.max_parquet_uncompressed_bytes
    for group in range(table.metadata.num_row_groups):
        first, last = line_no + 1, line_no + table.metadata.row_group(group).num_rows
        where = {"group": group, "first": first, "last": last}
        try:
            batch = table.read_row_group(group)
        except (pa.ArrowException, OSError, ValueError, MemoryError) as exc:  # a corrupt page, a bad codec
            raise AtLine(first, RowError("file", PARQUET_ROW_GROUP_UNREADABLE.format(**where, error=str(exc)[:200])))
        budget -= decoded_bytes(batch)
        if budget < 0:
            limit = limits.max_parquet_uncompressed_bytes
            raise AtLine(first, RowError("file", PARQUET_DECODES_TOO_BIG.format(**where, limit=limit)))
        yield from tabular_rows(batch, list(range(first, last + 1)))
        line_no = last


def detect_format(name: str) -> str:
    suffix = Path(name).suffix.lower().lstrip(".")
    return {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "csv": "csv", "parquet": "parquet", "pq": "parquet"}.get(
        suffix, ""
    )


_READERS = {"jsonl": (_jsonl_rows, None), "csv": (_csv_rows, _tabular_to_raw),
            "parquet": (_parquet_rows, _tabular_to_raw)}


def _line_error(line_no: int, exc: RowError) -> str:
    return f"line {line_no}: field '{exc.field_name}' {exc.message}"


def iter_rows(stream: IO[bytes], fmt: str, *, limits: ImportLimits | None = None,
              remember_ids: bool = True) -> Iterator[PromptRow]:
    """Decode and validate a file row by row, for a writer that streams (`services.import_prompts` in
    one transaction). Once a row is bad no further row is yielded; reading goes on to list up to 20 bad
    lines, then ValidationError is raised, so the consumer's transaction rolls back: all or nothing.

    The limits of `importing.limits` (settings) apply before each line or row group is decoded further.
    `remember_ids=False` leaves ids repeated across the file to the writer (`services.import_prompts` checks
    them in the database batch by batch), so nothing here grows with the file."""
    if fmt not in FORMATS:
        raise ValidationError({"format": f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}."})
    limits = limits or ImportLimits.from_settings()
    reader, to_raw = _READERS[fmt]
    errors: list[str] = []
    seen_ids: dict[str, int] = {}
    count = 0
    try:
        for count, (line_no, raw) in enumerate(reader(stream, limits), start=1):
            check_row_count(line_no, count, limits)
            try:
                row = raw if isinstance(raw, PromptRow) else clean_row(to_raw(raw) if to_raw else raw, line_no)
            except RowError as exc:
                errors.append(_line_error(line_no, exc))
            else:
                if remember_ids and row.external_id:
                    if (first := seen_ids.get(row.external_id)) is not None:
                        errors.append(ID_REPEATS.format(line=line_no, id=row.external_id, first=first))
                    else:
                        seen_ids[row.external_id] = line_no
                if not errors:
                    yield row
            if len(errors) >= MAX_ERRORS_REPORTED:
                break
    except AtLine as exc:
        errors.append(_line_error(exc.line, exc.error))
    except RowError as exc:
        errors.append(f"field '{exc.field_name}' {exc.message}")
    if errors:
        raise ValidationError({"file": errors})
    if not count:
        raise ValidationError({"file": ["holds no rows"]})


def read_rows(stream: IO[bytes], fmt: str, *, limits: ImportLimits | None = None) -> list[PromptRow]:
    """Decode and validate a whole file. Raises ValidationError listing every bad line (up to 20)."""
    return list(iter_rows(stream, fmt, limits=limits))


def read_rows_from_objects(objects: list, *, first_line: int = 1) -> list[PromptRow]:
    """Validate rows that arrived already decoded (a JSON API body); 'line' is the 1-based index."""
    errors, rows, seen_ids = [], [], {}
    limits = ImportLimits.from_settings()
    if len(objects) > limits.max_rows:
        raise ValidationError({"rows": [TOO_MANY_ROWS.format(limit=limits.max_rows)]})
    for offset, raw in enumerate(objects):
        line_no = first_line + offset
        try:
            row = clean_row(raw, line_no)
        except RowError as exc:
            errors.append(f"line {line_no}: field '{exc.field_name}' {exc.message}")
            continue
        if row.external_id and row.external_id in seen_ids:
            errors.append(ID_REPEATS.format(line=line_no, id=row.external_id, first=seen_ids[row.external_id]))
        seen_ids.setdefault(row.external_id, line_no)
        rows.append(row)
        if len(errors) >= MAX_ERRORS_REPORTED:
            break
    if errors:
        raise ValidationError({"rows": errors})
    if not rows:
        raise ValidationError({"rows": ["holds no rows"]})
    return rows
