"""Bulk writes for the prompt import: ids allocated up front, then PostgreSQL `COPY` or SQLite `executemany`.

Called only inside the import's transaction (`feedback.services.prompts.import_prompts`), so a failure
anywhere rolls every table back. Ids come from the table's own sequence (PostgreSQL `nextval`, SQLite
past `max(id)` and `sqlite_sequence` while this transaction holds the write lock), so rows link to each
other without reading them back.
"""

from __future__ import annotations

from django.db import connection

SQLITE_BATCH_ROWS = 5000


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _table(model) -> str:
    return model._meta.db_table


def allocate_ids(model, count: int) -> list[int]:
    """`count` fresh primary keys for `model`, reserved for this transaction."""
    if count <= 0:
        return []
    table = _table(model)
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                           [connection.ops.quote_name(table), count])
            return [row[0] for row in cursor.fetchall()]
        cursor.execute(f"SELECT max(id) FROM {connection.ops.quote_name(table)}")
        highest = cursor.fetchone()[0] or 0
        cursor.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_sequence'")
        if cursor.fetchone():
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
            found = cursor.fetchone()
            highest = max(highest, found[0] if found else 0)
    return list(range(highest + 1, highest + 1 + count))


def prep_json(model, field_name: str, value):
    """A JSON value as this backend stores it (what the ORM would send)."""
    return model._meta.get_field(field_name).get_db_prep_save(value, connection)


def write_rows(model, columns: list[str], rows) -> int:
    """Insert `rows` (tuples in the order of `columns`, JSON values already prepared with `prep_json`).

    PostgreSQL: one `COPY … FROM STDIN`; SQLite: `executemany` in batches. Returns the number of rows."""
    fields = [model._meta.get_field(c) for c in columns]
    table = connection.ops.quote_name(_table(model))
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    count = 0
    with connection.cursor() as cursor:
        if is_postgres():
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
            return count
        sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(fields))})"
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) >= SQLITE_BATCH_ROWS:
                cursor.executemany(sql, batch)
                count += len(batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
            count += len(batch)
    return count


def existing_keys(model, *, project_id: int, column: str, values: list[str], chunk: int = 900) -> set[str]:
    """Which of `values` already exist in `column` for the project (one indexed look-up per chunk)."""
    found: set[str] = set()
    if not values:
        return found
    table = connection.ops.quote_name(_table(model))
    name = connection.ops.quote_name(column)
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(f"SELECT {name} FROM {table} WHERE project_id = %s AND {name} = ANY(%s)",
                           [project_id, list(values)])
            return {row[0] for row in cursor.fetchall()}
        for start in range(0, len(values), chunk):
            part = values[start : start + chunk]
            cursor.execute(f"SELECT {name} FROM {table} WHERE project_id = %s AND {name} IN ({', '.join(['%s'] * len(part))})",
                           [project_id, *part])
            found.update(row[0] for row in cursor.fetchall())
    return found
