"""Database helpers shared by the apps' services: row locks that suit both backends, and retrying a
transaction the database rolled back because of a deadlock or a serialization failure."""

from __future__ import annotations

import functools
import logging
import random
import time

from django.db import OperationalError, connection

logger = logging.getLogger(__name__)


def lock_rows(queryset, **options):
    """SELECT … FOR NO KEY UPDATE where the database has row locks (SQLite's IMMEDIATE transactions already
    serialise). NO KEY: the rows' keys never change, and a plain FOR UPDATE would also block the foreign-key
    checks (FOR KEY SHARE) of concurrent inserts that point at these rows — a classic source of deadlocks."""
    if not connection.features.has_select_for_update:
        return queryset
    return queryset.select_for_update(no_key=True, **options)


TRANSIENT_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def retry_transient(fn):
    """Run a write again (up to 3 times) when the database reports a deadlock, a serialization failure or
    SQLite's "database is locked": the transaction was rolled back whole, so trying again is safe."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for attempt in range(3):
            try:
                return fn(*args, **kwargs)
            except OperationalError as exc:
                transient = getattr(exc.__cause__, "sqlstate", None) in TRANSIENT_SQLSTATES or "database is locked" in str(exc)
                if not transient or attempt == 2 or connection.in_atomic_block:
                    raise
                logger.warning("retrying %s after a transient database error: %s", fn.__name__, str(exc).splitlines()[0])
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    return wrapper
