"""Faults: the database failing under load (connections dropped, or the write lock held by someone else)
leaves every stored judgement intact, and the system recovers by itself.

(The worker killed mid-run: tests/training/test_worker.py; the disk filling up while a model is saved:
tests/training/test_faults.py; a client leaving a streamed export: tests/feedback/exports/test_rows.py.)
"""

import sqlite3
import threading
import time
from collections import Counter

import pytest
from django.db import OperationalError, InterfaceError, connection

from feedback import services
from feedback.models import Assignment, ComparisonTask, Judgement
from tests.feedback.factories import make_member, make_tasks

def inject_fault() -> None:
    """One fault while the annotators work. PostgreSQL: the server drops every other connection (as a
    restart does). SQLite: another process's connection takes the write lock (BEGIN IMMEDIATE) and keeps
    it past every writer's busy timeout, so their transactions fail with "database is locked"."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=20)
    try:
        holder.execute("BEGIN IMMEDIATE")
        time.sleep(1.0)
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@pytest.mark.django_db(transaction=True)
def test_database_failing_under_load_loses_nothing(project, monkeypatch):
    """Two faults while 8 annotators work; the annotators see errors (counted) and carry on."""
    if connection.vendor == "sqlite":  # writers give up on a held lock after 0.1 s instead of 20 s
        monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.1)
    project.overlap = 2
    project.save()
    # Enough work that the annotators are still busy when the second fault lands, even on the fast path.
    make_tasks(project, 150, k=2)
    people = [make_member(project) for _ in range(8)]
    stored = Counter()
    errors = Counter()
    unexpected = []
    stop = threading.Event()

    def annotate(person):
        while not stop.is_set():
            try:
                held = services.next_task(project=project, annotator=person)
                if held is None:
                    break
                key = f"{person.pk}-{held.task_id}"
                for _ in range(2):  # a retry after a dropped connection must not store twice
                    try:
                        judgement, created = services.submit_judgement(
                            task=held.task, annotator=person, ranking=[["a"], ["b"]], idempotency_key=key)
                        stored[judgement.pk] += 1
                        break
                    except (OperationalError, InterfaceError):
                        errors["submit"] += 1
                        connection.close()
            except (OperationalError, InterfaceError):
                errors["pick"] += 1
                connection.close()  # the next call reconnects
                time.sleep(0.05)
            except Exception as exc:  # anything else is a bug the test must report (threads swallow it)
                unexpected.append(exc)
                break
        connection.close()

    threads = [threading.Thread(target=annotate, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for _ in range(2):
        inject_fault()
        time.sleep(0.3)
    for t in threads:
        t.join(timeout=120)
    stop.set()

    # The faults reached the annotators (the test injected something), and nothing else went wrong.
    assert not unexpected, unexpected
    assert errors["pick"] + errors["submit"] > 0, errors

    # Every judgement is stored once, counters agree with the rows, and work goes on afterwards.
    per_task = Counter(Judgement.objects.values_list("task_id", flat=True))
    for task in ComparisonTask.objects.all():
        assert task.judgements_done == per_task.get(task.pk, 0)
    assert Judgement.objects.values("task_id", "annotator_id").distinct().count() == Judgement.objects.count()
    assert set(stored) <= set(Judgement.objects.values_list("pk", flat=True))
    latecomer = make_member(project)
    while (held := services.next_task(project=project, annotator=latecomer)) is not None:
        services.submit_judgement(task=held.task, annotator=latecomer, ranking=[["a"], ["b"]])
    leftover = ComparisonTask.objects.exclude(status=ComparisonTask.Status.COMPLETE).count()
    live = Assignment.objects.filter(state=Assignment.State.LEASED).count()
    assert leftover <= live  # anything unfinished is only held by a lease that will expire
