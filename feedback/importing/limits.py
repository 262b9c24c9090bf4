"""The import boundary: how much a prompt file may hold, checked before anything is decoded further.

Every limit is a setting with a sane default. JSONL lines are read with a bounded `readline` and parsed
with `core.parsing.loads_bounded`; CSV has a field size limit; Parquet is refused from its footer alone
(rows, row groups, uncompressed bytes) before a single data page is decompressed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024  # a 100k-character prompt and four 100k-character completions, in UTF-8
DEFAULT_MAX_CSV_FIELD_CHARS = 1_000_000
DEFAULT_MAX_PARQUET_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_PARQUET_ROW_GROUPS = 10_000
DEFAULT_MAX_PARQUET_COLUMNS = 64
# Parquet's footer is Thrift: bound what its decoder may allocate for strings and lists.
PARQUET_THRIFT_STRING_LIMIT = 16 * 1024 * 1024
PARQUET_THRIFT_CONTAINER_LIMIT = 1_000_000

TOO_MANY_ROWS = "holds more than {limit} rows"
LINE_TOO_LONG = "is longer than {limit} bytes"
PARQUET_TOO_MANY_ROWS = "declares {rows} rows; the limit is {limit}"
PARQUET_TOO_MANY_ROW_GROUPS = "declares {groups} row groups; the limit is {limit}"
PARQUET_TOO_MANY_COLUMNS = "declares {columns} columns; the limit is {limit}"
PARQUET_TOO_BIG = ("declares {size} bytes uncompressed (total_uncompressed_size of its column chunks); "
                   "the limit is {limit} bytes")
PARQUET_ROW_GROUP_UNREADABLE = "row group {group} (rows {first}–{last}) is not readable ({error})"
PARQUET_DECODES_TOO_BIG = ("row group {group} (rows {first}–{last}) would be decoded past the limit of {limit} bytes "
                           "(repeated dictionary values)")


class RowError(Exception):
    """A bad value: `field_name` names the field (or 'row' / 'file')."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field_name = field_name
        self.message = message


class AtLine(Exception):
    """A RowError that stops reading the file, at a known line (JSONL/CSV) or row (Parquet)."""

    def __init__(self, line: int, error: RowError):
        super().__init__(f"line {line}: {error.message}")
        self.line = line
        self.error = error


@dataclass(frozen=True)
class ImportLimits:
    max_rows: int
    max_line_bytes: int
    max_csv_field_chars: int
    max_parquet_uncompressed_bytes: int
    max_parquet_row_groups: int
    max_parquet_columns: int

    @classmethod
    def from_settings(cls) -> "ImportLimits":
        return cls(
            max_rows=getattr(settings, "IMPORT_MAX_ROWS", DEFAULT_MAX_ROWS),
            max_line_bytes=getattr(settings, "IMPORT_MAX_LINE_BYTES", DEFAULT_MAX_LINE_BYTES),
            max_csv_field_chars=getattr(settings, "IMPORT_MAX_CSV_FIELD_CHARS", DEFAULT_MAX_CSV_FIELD_CHARS),
            max_parquet_uncompressed_bytes=getattr(settings, "IMPORT_MAX_PARQUET_UNCOMPRESSED_BYTES",
                                                   DEFAULT_MAX_PARQUET_UNCOMPRESSED_BYTES),
            max_parquet_row_groups=getattr(settings, "IMPORT_MAX_PARQUET_ROW_GROUPS", DEFAULT_MAX_PARQUET_ROW_GROUPS),
            max_parquet_columns=getattr(settings, "IMPORT_MAX_PARQUET_COLUMNS", DEFAULT_MAX_PARQUET_COLUMNS),
        )


def check_row_count(line_no: int, rows_seen: int, limits: ImportLimits) -> None:
    if rows_seen > limits.max_rows:
        raise AtLine(line_no, RowError("file", TOO_MANY_ROWS.format(limit=limits.max_rows)))


def bounded_lines(stream, limits: ImportLimits):
    """(line number, bytes) for each line, never holding more than max_line_bytes (+1) of one line."""
    line_no = 0
    while True:
        raw = stream.readline(limits.max_line_bytes + 1)
        if not raw:
            return
        line_no += 1
        if len(raw) > limits.max_line_bytes:
            raise AtLine(line_no, RowError("row", LINE_TOO_LONG.format(limit=limits.max_line_bytes)))
        yield line_no, raw


def decode_line(line_no: int, raw) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise AtLine(line_no, RowError("row", f"is not valid UTF-8 (byte {exc.start + 1})")) from None


def parquet_uncompressed_bytes(metadata) -> int:
    """The sum of every column chunk's total_uncompressed_size, read from the footer only."""
    total = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        total += sum(row_group.column(c).total_uncompressed_size for c in range(row_group.num_columns))
    return total


def check_parquet_metadata(metadata, limits: ImportLimits) -> None:
    """Refuse a Parquet file from its footer: nothing has been decompressed yet."""
    if metadata.num_rows > limits.max_rows:
        raise RowError("file", PARQUET_TOO_MANY_ROWS.format(rows=metadata.num_rows, limit=limits.max_rows))
    if metadata.num_row_groups > limits.max_parquet_row_groups:
        raise RowError("file", PARQUET_TOO_MANY_ROW_GROUPS.format(groups=metadata.num_row_groups,
                                                                  limit=limits.max_parquet_row_groups))
    if metadata.num_columns > limits.max_parquet_columns:
        raise RowError("file", PARQUET_TOO_MANY_COLUMNS.format(columns=metadata.num_columns,
                                                               limit=limits.max_parquet_columns))
    size = parquet_uncompressed_bytes(metadata)
    if size > limits.max_parquet_uncompressed_bytes:
        raise RowError("file", PARQUET_TOO_BIG.format(size=size, limit=limits.max_parquet_uncompressed_bytes))


def dictionary_columns(schema) -> list[str]:
    """Top-level string/binary columns: read them as dictionaries so a repeated value stays one value in memory."""
    import pyarrow as pa

    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]


def decoded_bytes(table) -> int:
    """The bytes `table` takes once every dictionary is expanded, computed without expanding any."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for column in table.columns:
        for chunk in column.chunks:
            if isinstance(chunk, pa.DictionaryArray) and len(chunk):
                lengths = pc.binary_length(chunk.dictionary)
                total += (pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0) + 8 * len(chunk)
            else:
                total += chunk.nbytes
    return total
