"""Bulk writes for the prompt import: ids allocated up front, then PostgreSQL `COPY` or SQLite `executemany`.

Called only inside the import's transaction (`feedback.services.prompts.import_prompts`), so a failure
anywhere rolls every table back. Ids come from the table's own sequence (PostgreSQL `nextval`, SQLite
past `max(id)` and `sqlite_sequence` while this transaction holds the write lock), so rows link to each
other without reading them back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import islice

from django.db import InternalError, OperationalError, ProgrammingError, connection, transaction

SQLITE_BATCH_ROWS = 5000


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _table(model) -> str:
    return model._meta.db_table


def allocate_ids(model, count: int) -> Sequence[int]:
    """`count` fresh primary keys for `model`, reserved for this transaction."""
    if count <= 0:
        return []
    table = _table(model)
    with connection.cursor() as cursor:
        if is_postgres():
            # The sequence's name first: looked up once, not per id (that lookup cost 10x the nextval itself).
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [connection.ops.quote_name(table)])
            sequence = cursor.fetchone()[0]
            # Unless another session drew from the sequence meanwhile, the values are one run: only its ends
            # travel (a list of a million ids costs the client more than the database's nextval calls).
            cursor.execute("SELECT min(id), max(id), CASE WHEN max(id) - min(id) + 1 = %s THEN NULL"
                           " ELSE array_agg(id) END FROM (SELECT nextval(%s::regclass) AS id"
                           " FROM generate_series(1, %s)) AS reserved", [count, sequence, count])
            low, high, scattered = cursor.fetchone()
            return range(low, high + 1) if scattered is None else sorted(scattered)
        cursor.execute(f"SELECT max(id) FROM {connection.ops.quote_name(table)}")
        highest = cursor.fetchone()[0] or 0
        cursor.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_sequence'")
        if cursor.fetchone():
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
            found = cursor.fetchone()
            highest = max(highest, found[0] if found else 0)
    return list(range(highest + 1, highest + 1 + count))


# PostgreSQL's binary COPY: the client sends each value in the type's wire format, so neither side escapes or
# parses text (a timestamp, an integer) per row. The binary form of jsonb is a version byte (1) and the JSON text.
JSONB_BINARY_VERSION = b"\x01"
_BINARY_TYPES = {"bigint": "int8", "integer": "int4", "smallint": "int2", "boolean": "bool", "text": "text",
                 "varchar": "text", "timestamp with time zone": "timestamptz",
                 "jsonb": "bytea"}  # jsonb goes as the bytes prep_json made: version byte and text


def prep_json(model, field_name: str, value) -> str | bytes | None:
    """A JSON value as the ORM would send it, already serialised: the text SQLite stores, for PostgreSQL the
    binary jsonb COPY sends (`JSONB_BINARY_VERSION` + text), or None for SQL NULL. Serialised, not an adapter
    object, so a value shared by every row (`{}`) is serialised once, not once per row."""
    if value is None:
        return None
    text = json.dumps(value, cls=model._meta.get_field(field_name).encoder)
    return JSONB_BINARY_VERSION + text.encode() if is_postgres() else text


def _binary_type(field) -> str:
    db_type = field.db_type(connection).split("(")[0]
    return _BINARY_TYPES[db_type]


def write_rows(model, columns: list[str], rows) -> int:
    """Insert `rows` (tuples in the order of `columns`, JSON values already prepared with `prep_json`).

    PostgreSQL: one binary `COPY … FROM STDIN`; SQLite: `executemany` in batches. Returns the number of rows."""
    fields = [model._meta.get_field(c) for c in columns]
    types = [_binary_type(f) for f in fields] if is_postgres() else None
    return _insert(_quoted_table(model), [f.column for f in fields], rows, types)


def _quoted_table(model) -> str:
    return connection.ops.quote_name(_table(model))


def _insert(table: str, column_names: list[str], rows, binary_types: list[str] | None = None) -> int:
    """`table` is already quoted (or schema-qualified); `binary_types` (PostgreSQL) the psycopg type of each column."""
    names = ", ".join(connection.ops.quote_name(c) for c in column_names)
    count = 0
    with connection.cursor() as cursor:
        if is_postgres():
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(binary_types)
                for row in rows:
                    copy.write_row(row)
                    count += 1
            return count
        sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(column_names))})"
        rows = iter(rows)
        while batch := list(islice(rows, SQLITE_BATCH_ROWS)):  # islice builds each batch in C, not row by row
            cursor.executemany(sql, batch)
            count += len(batch)
    return count


def skip_reference_checks(project_table: str, project_id: int) -> bool:
    """PostgreSQL: stop checking this transaction's foreign keys row by row, where the database role may.

    Every key the import writes points at the project or at a row written earlier in the same transaction, with an
    id this transaction reserved (`allocate_ids`), so the per-row checks PostgreSQL runs at commit (nine index
    look-ups and row locks per pair, about 40% of the server's CPU) can only pass. The one row from outside, the
    project, is locked here as each check would lock it (FOR KEY SHARE: deleting it waits for the import, then
    fails its own check against the new prompts). `session_replication_role = replica` turns off triggers, and
    foreign-key checks are triggers; unique indexes and CHECK constraints still hold. Setting it needs a superuser
    or `GRANT SET ON PARAMETER session_replication_role` (PostgreSQL 15+); without either the checks simply run.
    `restore_reference_checks` turns them back on before anything else is written. True if they are off."""
    if not is_postgres():
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {project_table} WHERE id = %s FOR KEY SHARE", [project_id])
        try:
            with transaction.atomic():  # a savepoint: a refused SET must not abort the import's transaction
                cursor.execute("SET LOCAL session_replication_role = replica")
        except (ProgrammingError, OperationalError, InternalError):  # permission denied (42501)
            return False
    return True


@contextmanager
def sqlite_reference_checks_off() -> Iterator[None]:
    """SQLite: no foreign-key checks in the import's transaction when it is the outermost one (eight parent look-ups
    per pair, about 5% of an import's CPU in an A/B). Every key it writes is one it reserved or the project's, as on
    PostgreSQL (`skip_reference_checks`), and SQLite serialises writers: the import holds the write lock from its
    BEGIN, so the project cannot be deleted under it. SQLite ignores `PRAGMA foreign_keys` inside a transaction,
    so an import nested in another one keeps the checks; Django's `constraint_checks_disabled` turns them back
    on when the import ends, however it ends."""
    if is_postgres():
        yield
        return
    with connection.constraint_checks_disabled():
        yield


def restore_reference_checks() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = origin")


# The external ids one import has read so far, with their lines: a temporary table, so the check that an id
# does not repeat across the file costs the database's memory (and disk), not this process's.
# Created in the import's transaction and dropped at its end (a rollback undoes the CREATE on both backends).
SEEN_IDS_TABLE = "import_seen_ids"


def _seen_ids_table() -> str:
    """Schema-qualified, so a DROP can never reach a permanent table of the same name."""
    return f"{'pg_temp' if is_postgres() else 'temp'}.{SEEN_IDS_TABLE}"


def start_seen_ids() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {_seen_ids_table()}")
        cursor.execute(f"CREATE TEMPORARY TABLE {SEEN_IDS_TABLE} (external_id text PRIMARY KEY, line integer NOT NULL)")


def end_seen_ids() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {_seen_ids_table()}")


def record_seen_ids(ids_and_lines: list[tuple[str, int]]) -> dict[str, int]:
    """Record this batch's (external id, line) pairs (ids unique within the batch); return the ids that an
    earlier batch already held, with the line they were first seen on."""
    earlier = dict(_lookup(_seen_ids_table(), "external_id", [i for i, _ in ids_and_lines], extra_where="",
                           params=[], select="external_id, line"))
    _insert(_seen_ids_table(), ["external_id", "line"], (pair for pair in ids_and_lines if pair[0] not in earlier),
            ["text", "int4"])
    return earlier


def existing_keys(model, *, project_id: int, column: str, values: list[str]) -> set[str]:
    """Which of `values` already exist in `column` for the project (indexed look-ups)."""
    name = connection.ops.quote_name(column)
    return {row[0] for row in _lookup(_quoted_table(model), column, values, extra_where="project_id = %s AND ",
                                      params=[project_id], select=name)}


def _lookup(table: str, column: str, values: list, *, extra_where: str, params: list, select: str,
            chunk: int = 900) -> list[tuple]:
    """Rows of `table` whose `column` is one of `values`: one `= ANY(array)` on PostgreSQL, chunks of
    `IN (…)` on SQLite (whose statements hold at most 999 parameters here). `table` is already quoted."""
    if not values:
        return []
    name = connection.ops.quote_name(column)
    found = []
    with connection.cursor() as cursor:
        if is_postgres():
            # %b: the array goes in binary, which psycopg dumps ~6x faster than as text (50 ms per 20k strings).
            cursor.execute(f"SELECT {select} FROM {table} WHERE {extra_where}{name} = ANY(%b)", [*params, list(values)])
            return cursor.fetchall()
        for start in range(0, len(values), chunk):
            part = values[start : start + chunk]
            marks = ", ".join(["%s"] * len(part))
            cursor.execute(f"SELECT {select} FROM {table} WHERE {extra_where}{name} IN ({marks})", [*params, *part])
            found.extend(cursor.fetchall())
    return found
