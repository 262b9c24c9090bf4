"""32 annotators drain a project at once: nothing lost, nothing duplicated, no 'database is locked'.

Runs on SQLite (IMMEDIATE transactions serialise writers) and, under `make test`, again on
PostgreSQL (SKIP LOCKED row locks), against the real database from real threads.
"""

import threading
from collections import Counter

import pytest
from django.db import connection

from feedback import services
from feedback.models import Assignment, ComparisonTask, Judgement
from tests.feedback.factories import make_member, make_tasks

THREADS = 32
OVERLAP = 3
TASKS = 60


@pytest.mark.django_db(transaction=True)
def test_32_annotators_drain_a_project_with_overlap_3(project):
    project.overlap = OVERLAP
    project.save()
    make_tasks(project, TASKS, k=3)
    people = [make_member(project) for _ in range(THREADS)]
    errors: list[BaseException] = []
    submitted = Counter()
    start = threading.Barrier(THREADS)

    def annotate(person):
        try:
            start.wait()
            while (assignment := services.next_task(project=project, annotator=person)) is not None:
                ranking = [[label] for label in "abc"]
                # Every submission is sent twice with the same key, as a client retrying would.
                key = f"{person.pk}-{assignment.task_id}"
                for _ in range(2):
                    services.submit_judgement(
                        task=assignment.task, annotator=person, ranking=ranking, idempotency_key=key)
                submitted[person.pk] += 1
        except BaseException as exc:  # reported below; a thread must not die silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=annotate, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    assert not errors, errors[:3]
    assert sum(submitted.values()) == TASKS * OVERLAP
    assert Judgement.objects.count() == TASKS * OVERLAP
    per_task = Counter(Judgement.objects.values_list("task_id", flat=True))
    assert set(per_task.values()) == {OVERLAP}
    for task_id in per_task:
        judges = list(Judgement.objects.filter(task_id=task_id).values_list("annotator_id", flat=True))
        assert len(set(judges)) == OVERLAP
    assert set(ComparisonTask.objects.values_list("status", flat=True)) == {ComparisonTask.Status.COMPLETE}
    assert not Assignment.objects.filter(state=Assignment.State.LEASED).exists()


@pytest.mark.django_db(transaction=True)
def test_one_annotator_in_eight_tabs_holds_one_lease(project):
    """Picks of one annotator run one at a time (SQLite: the write lock; PostgreSQL: the annotator's row, locked in
    the statement that reads the held lease): every tab gets the same task, never a second lease."""
    make_tasks(project, 20, k=2)
    person = make_member(project)
    tabs = 8
    start = threading.Barrier(tabs)
    picked, errors = [], []

    def pick():
        try:
            start.wait()
            picked.append(services.next_task(project=project, annotator=person).task_id)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=pick) for _ in range(tabs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert len(set(picked)) == 1 and len(picked) == tabs
    assert Assignment.objects.filter(annotator=person, state=Assignment.State.LEASED).count() == 1
