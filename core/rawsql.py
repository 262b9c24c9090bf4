"""Hand-written SQL for the few statements on the hottest paths, with the ORM's own value conversions.

Building and compiling a queryset costs more CPU than running a short indexed statement (on SQLite several
times more). The annotate path's statements are fixed, so they are written once as parametrised SQL and run
through `connection.cursor()`; `RowReader` turns their rows into ordinary model instances (the same
converters the ORM applies: datetimes on SQLite, JSON, booleans), so callers cannot tell the difference.
Everything else keeps using the ORM.
"""

from __future__ import annotations

from django.db import connection


def quoted(table_alias: str, column: str) -> str:
    return f"{connection.ops.quote_name(table_alias)}.{connection.ops.quote_name(column)}"


class RowReader:
    """The concrete columns of `model` (all of them, or `attnames`) for a SELECT list, and rows → instances."""

    def __init__(self, model, attnames: list[str] | None = None):
        self.model = model
        fields = [f for f in model._meta.concrete_fields if attnames is None or f.attname in attnames]
        self.fields = fields
        self.attnames = [f.attname for f in fields]
        self._converters: dict[str, list] = {}  # per database vendor

    def __len__(self) -> int:
        return len(self.fields)

    def select_list(self, table_alias: str) -> str:
        return ", ".join(quoted(table_alias, f.column) for f in self.fields)

    def converters(self) -> list:
        vendor = connection.vendor
        if vendor not in self._converters:
            per_field = []
            for f in self.fields:
                col = f.get_col(self.model._meta.db_table)
                per_field.append((connection.ops.get_db_converters(col) + f.get_db_converters(connection), col))
            self._converters[vendor] = per_field
        return self._converters[vendor]

    def build(self, values):
        """A model instance from this reader's columns, as the ORM would have built it (not `adding`)."""
        converted = []
        for value, (fns, col) in zip(values, self.converters()):
            for fn in fns:
                value = fn(value, col, connection)
            converted.append(value)
        return self.model.from_db(connection.alias, self.attnames, converted)


def instance(model, values: dict):
    """A model instance (not `adding`) from Python values by attname; fields left out are deferred."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db(connection.alias, names, [values[name] for name in names])


def fetch_one(sql: str, params) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def fetch_all(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def execute(sql: str, params) -> int:
    """Run a write; the number of rows it touched."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def db_datetime(value):
    """A datetime as this backend stores it (SQLite: text in UTC; PostgreSQL: as is)."""
    return connection.ops.adapt_datetimefield_value(value)


def db_json(value):
    return connection.ops.adapt_json_value(value, None)
