"""Faults: the database dropping every connection under load leaves every stored judgement intact,
and the system recovers by itself.

(The worker killed mid-run: tests/training/test_worker.py; the disk filling up while a model is saved:
tests/training/test_faults.py; a client leaving a streamed export: tests/feedback/test_exports.py.)
"""

import threading
import time
from collections import Counter

import pytest
from django.db import OperationalError, InterfaceError, connection

from feedback import services
from feedback.models import Assignment, ComparisonTask, Judgement
from tests.feedback.factories import make_member, make_tasks

@pytest.mark.django_db(transaction=True)
def test_database_dropping_every_connection_under_load_loses_nothing(project):
    """On PostgreSQL the server is made to drop every connection twice while 8 annotators work (as a
    restart does); on SQLite (no server) the annotators' own connections are closed under them instead."""
    project.overlap = 2
    project.save()
    make_tasks(project, 40, k=2)
    people = [make_member(project) for _ in range(8)]
    stored = Counter()
    errors = Counter()
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
        connection.close()

    threads = [threading.Thread(target=annotate, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for _ in range(2):
        time.sleep(0.3)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    for t in threads:
        t.join(timeout=120)
    stop.set()

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
