"""SQLite's writers of one process queue on a lock (core/backends/sqlite3): it is released however a
transaction ends, and a writer that cannot get it in the database's timeout gets SQLite's own error."""

import threading

import pytest
from django.db import OperationalError, connection, transaction

from feedback.models import Prompt

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the writer queue is SQLite's; PostgreSQL locks rows"),
]


def _prompt(project, text: str) -> Prompt:
    return Prompt.objects.create(project=project, text=text, content_hash=text)


def _write_in_thread(project, *, text: str) -> BaseException | None:
    """Save one prompt from another thread (its own connection); what it raised, if anything."""
    raised: list[BaseException] = []

    def write():
        try:
            with transaction.atomic():
                _prompt(project, text)
        except BaseException as error:  # noqa: BLE001  (handed to the test)
            raised.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the writer never got the write lock"
    return raised[0] if raised else None


def test_the_next_writer_gets_the_lock_after_a_commit_a_rollback_and_a_close(project):
    with transaction.atomic():
        _prompt(project, "committed")
    assert _write_in_thread(project, text="after commit") is None

    with pytest.raises(RuntimeError), transaction.atomic():
        _prompt(project, "rolled back")
        raise RuntimeError("the view failed half-way")
    assert _write_in_thread(project, text="after rollback") is None

    with transaction.atomic():
        _prompt(project, "never committed")
        connection.close()  # a connection lost mid-transaction: its lock must not outlive it
    assert _write_in_thread(project, text="after close") is None

    texts = set(Prompt.objects.filter(project=project).values_list("text", flat=True))
    assert texts == {"committed", "after commit", "after rollback", "after close"}


def test_a_writer_that_waits_past_the_timeout_gets_database_is_locked(project):
    timeout = connection.settings_dict["OPTIONS"].get("timeout")
    connection.settings_dict["OPTIONS"]["timeout"] = 0.2
    try:
        with transaction.atomic():  # this thread holds the write lock for the whole wait
            _prompt(project, "held")
            raised = _write_in_thread(project, text="waited too long")
        assert isinstance(raised, OperationalError) and "database is locked" in str(raised)
        assert _write_in_thread(project, text="after the holder committed") is None
    finally:
        connection.settings_dict["OPTIONS"]["timeout"] = timeout


def test_a_destroyed_test_database_takes_its_writers_lock_file_with_it(tmp_path):
    database = tmp_path / "throwaway.sqlite3"
    database.write_bytes(b"")
    lock_file = tmp_path / "throwaway.sqlite3-writers.lock"
    lock_file.write_bytes(b"")
    connection.creation._destroy_test_db(str(database), verbosity=0)
    assert not database.exists() and not lock_file.exists()
