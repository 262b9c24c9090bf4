"""Test databases of the queued-writers SQLite backend: the writers' lock file goes with the database file."""

from __future__ import annotations

import contextlib
import os

from django.db.backends.sqlite3 import creation


class DatabaseCreation(creation.DatabaseCreation):
    def _destroy_test_db(self, test_database_name, verbosity):
        super()._destroy_test_db(test_database_name, verbosity)
        if test_database_name and not self.is_in_memory_db(test_database_name):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{test_database_name}-writers.lock")
