"""SQLite with writers queued on our own locks before SQLite's, so the next writer starts when the last commits.

Every transaction here is IMMEDIATE (settings): it takes SQLite's write lock when it begins. A connection that
finds it taken waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, … up to 100 ms between tries and never
learns when the lock is freed, so under 16 annotators a write that needs 3 ms waited hundreds of milliseconds.
Two locks now come first, both held from BEGIN to COMMIT or ROLLBACK:

- a lock per process and database file: threads of one gunicorn worker hand over at once, and only one of them
  at a time contends with other processes;
- an exclusive `flock` on `<database>-writers.lock`, for the other processes (gunicorn workers, the job worker,
  commands). It is polled every half millisecond rather than waited on, because a blocked `flock` cannot give up:
  after the database's `timeout` a writer gets the "database is locked" error SQLite itself would give.

bench/compare.py, 16 clients, gunicorn 2×4 (bench/RESULTS.md, "The annotate path"): p99 323–451 ms with SQLite's handler
alone, 132–157 ms with both locks. Reads never take either lock (WAL lets them run beside the writer).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

from django.db.backends.sqlite3 import base
from django.db.utils import OperationalError

from .creation import DatabaseCreation

POLL_SECONDS = 0.0005

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(name: str) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(name, threading.Lock())


def _flock_until(fd: int, deadline: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise OperationalError("database is locked") from None
            time.sleep(POLL_SECONDS)


class DatabaseWrapper(base.DatabaseWrapper):
    creation_class = DatabaseCreation
    _held_lock: threading.Lock | None = None  # this process's writer lock while this connection holds both
    _lock_fd: int | None = None
    _lock_fd_pid: int | None = None

    def _start_transaction_under_autocommit(self):
        # An in-memory database belongs to one connection: nobody to queue behind.
        if self._held_lock is None and not self.is_in_memory_db():
            self._acquire_writer_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer_lock()
            raise

    def _acquire_writer_lock(self) -> None:
        timeout = float(self.settings_dict["OPTIONS"].get("timeout", 5))
        deadline = time.monotonic() + timeout
        lock = _thread_lock(str(self.settings_dict["NAME"]))
        if not lock.acquire(timeout=timeout):
            raise OperationalError("database is locked")
        try:
            _flock_until(self._lock_file(), deadline)
        except BaseException:
            lock.release()
            raise
        self._held_lock = lock

    def _lock_file(self) -> int:
        # Opened once per connection and process: a descriptor inherited across fork() shares its lock with the
        # parent, which would let both in at once.
        if self._lock_fd is None or self._lock_fd_pid != os.getpid():
            self._lock_fd = os.open(f"{self.settings_dict['NAME']}-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self._lock_fd_pid = os.getpid()
        return self._lock_fd

    def _release_writer_lock(self):
        lock, self._held_lock = self._held_lock, None
        if lock is None:
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            lock.release()

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_writer_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_writer_lock()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_writer_lock()
            if self._lock_fd is not None and self._lock_fd_pid == os.getpid():
                os.close(self._lock_fd)
            self._lock_fd = None
