"""The statements of a pick and of a submit, written once as parametrised SQL (see core.rawsql for why).

Each function is one statement (claim_slot and record_judgement: one on PostgreSQL, where data-modifying CTEs
merge what SQLite runs as two or three) and mirrors the ORM queries it replaced; queue.py keeps the logic (the order of
statements, the locks, the transaction) and the ORM for the rare paths (gold tasks, adaptive overlap, retries
with an Idempotency-Key, releasing expired leases). Conditions that match a partial index are written as
literals (`"status" = 'open'`, `NOT "is_gold"`), exactly as in the index, so both planners use it. Rows are
locked where the database has row locks (PostgreSQL: FOR NO KEY UPDATE, as core.db.lock_rows); SQLite's
IMMEDIATE transaction already holds the write lock.
"""

from __future__ import annotations

import functools
from datetime import datetime

from django.db import connection
from django.utils import timezone

from core.rawsql import RowReader, instance, db_datetime, db_json, execute, fetch_all, fetch_one
from feedback.models import Assignment, ComparisonTask, Judgement, Prompt

ASSIGNMENT = RowReader(Assignment)
TASK = RowReader(ComparisonTask)
PROMPT = RowReader(Prompt)

A = Assignment._meta.db_table
T = ComparisonTask._meta.db_table
P = Prompt._meta.db_table
J = Judgement._meta.db_table
TC = ComparisonTask.completions.through._meta.db_table
C = ComparisonTask.completions.field.related_model._meta.db_table
U = Assignment.annotator.field.related_model._meta.db_table

LEASED = Assignment.State.LEASED.value
SUBMITTED = Assignment.State.SUBMITTED.value
OPEN = ComparisonTask.Status.OPEN.value
COMPLETE = ComparisonTask.Status.COMPLETE.value


def _row_lock(*, skip_locked: bool = False, of: str = "") -> str:
    if not connection.features.has_select_for_update:
        return ""
    return " FOR NO KEY UPDATE" + (f' OF "{of}"' if of else "") + (" SKIP LOCKED" if skip_locked else "")


def _task_with_prompt(values) -> ComparisonTask:
    task = TASK.build(values[:len(TASK)])
    task.prompt = PROMPT.build(values[len(TASK):])
    return task


_LEASE_WITH_TASK = (f'"{A}" a INNER JOIN "{T}" t ON t."id" = a."task_id" INNER JOIN "{P}" p ON p."id" = t."prompt_id"')


def lock_annotator(annotator_id: int) -> None:
    """PostgreSQL: one pick at a time per annotator (the caller skips this on SQLite). A statement of its own:
    under READ COMMITTED a statement that waited for this lock still reads other rows as they were before the
    wait, so the held lease is read by the next statement (a test with eight tabs fails when the two merge)."""
    fetch_one(f'SELECT "id" FROM "{U}" WHERE "id" = %s FOR NO KEY UPDATE', [annotator_id])


@functools.cache
def _held_lease_sql() -> str:
    return (f'SELECT {ASSIGNMENT.select_list("a")}, {TASK.select_list("t")}, {PROMPT.select_list("p")} '
            f'FROM {_LEASE_WITH_TASK} WHERE a."annotator_id" = %s AND a."project_id" = %s '
            f'AND a."state" = \'{LEASED}\' AND a."leased_until" > %s ORDER BY a."id" LIMIT 1')


def held_lease(*, annotator_id: int, project_id: int, now: datetime) -> Assignment | None:
    """The annotator's live lease in the project, with its task and prompt (select_related in one statement)."""
    row = fetch_one(_held_lease_sql(), [annotator_id, project_id, db_datetime(now)])
    if row is None:
        return None
    assignment = ASSIGNMENT.build(row[:len(ASSIGNMENT)])
    assignment.task = _task_with_prompt(row[len(ASSIGNMENT):])
    return assignment


def expired_leases(*, project_id: int, now: datetime, limit: int) -> list[tuple[int, int]]:
    """(assignment id, task id) of leases that ran out, on the partial index of live leases; on PostgreSQL the
    rows are locked, skipping those a concurrent sweep holds."""
    return fetch_all(
        f'SELECT "id", "task_id" FROM "{A}" WHERE "project_id" = %s AND "state" = \'{LEASED}\' '
        f'AND "leased_until" <= %s LIMIT %s'
        + _row_lock(skip_locked=connection.features.has_select_for_update_skip_locked),
        [project_id, db_datetime(now), limit],
    )


def _first_unseen_sql(conditions: str, order_by: str, indexed_by: str = "") -> str:
    """The first open task of a project (%s) meeting `conditions`, with its prompt, that the annotator (%s) has
    never seen, in `order_by` order."""
    indexed = f' INDEXED BY "{indexed_by}"' if indexed_by else ""
    return (f'SELECT {TASK.select_list("t")}, {PROMPT.select_list("p")} '
            f'FROM "{T}" t{indexed} INNER JOIN "{P}" p ON p."id" = t."prompt_id" '
            f'WHERE t."project_id" = %s AND t."status" = \'{OPEN}\' AND {conditions} '
            f'AND NOT EXISTS (SELECT 1 FROM "{A}" seen WHERE seen."task_id" = t."id" AND seen."annotator_id" = %s) '
            f'ORDER BY {order_by} LIMIT 1')


@functools.cache
def _candidate_sql() -> str:
    return _first_unseen_sql('NOT t."is_gold" AND t."slots_taken" < t."judgements_needed"', 't."priority", t."id"')


def first_candidate(*, project_id: int, annotator_id: int, skip_locked: bool, lock: bool) -> ComparisonTask | None:
    """The first open task in serving order with a free place that this annotator has never seen, with its
    prompt. `lock`: FOR NO KEY UPDATE OF the task row (PostgreSQL), `skip_locked` to pass rows others hold."""
    row = fetch_one(_candidate_sql() + (_row_lock(skip_locked=skip_locked, of="t") if lock else ""),
                    [project_id, annotator_id])
    return None if row is None else _task_with_prompt(row)


@functools.cache
def _gold_sql(vendor: str) -> str:
    # SQLite, without statistics, prefers the (project, status, id) index, whose equalities look more selective,
    # and then walks every open task of the project to find the few gold ones: 90 ms at 1M tasks against 3 ms at
    # 10k (bench/annotation_load.py --part scale). INDEXED BY names the partial index of open gold tasks instead.
    # PostgreSQL's planner has statistics and picks it by itself.
    return _first_unseen_sql('t."is_gold"', 't."id"', indexed_by="task_gold_open" if vendor == "sqlite" else "")


def first_unseen_gold(*, project_id: int, annotator_id: int) -> ComparisonTask | None:
    """The oldest open gold task this annotator has never seen, with its prompt."""
    row = fetch_one(_gold_sql(connection.vendor), [project_id, annotator_id])
    return None if row is None else _task_with_prompt(row)


_CLAIM = (f'UPDATE "{T}" SET "slots_taken" = "slots_taken" + 1 '
          f'WHERE "id" = %s AND "status" = \'{OPEN}\' AND "slots_taken" < "judgements_needed"')
_TEXTS = (f'SELECT c."id", c."text" FROM "{C}" c INNER JOIN "{TC}" tc ON c."id" = tc."completion_id" '
          f'WHERE tc."comparisontask_id" = ')


def completion_texts(task_id: int) -> dict[int, str]:
    return dict(fetch_all(_TEXTS + "%s", [task_id]))


def claim_slot(task_id: int) -> dict[int, str] | None:
    """Take one place of an open task that still has one (the conditional UPDATE never over-assigns) and read
    its completion texts; None when the place was gone. PostgreSQL: one statement (the read joins the UPDATE's
    RETURNING, so it answers rows only when the place was taken)."""
    if connection.vendor == "postgresql":
        texts = dict(fetch_all(f'WITH claimed AS ({_CLAIM} RETURNING "id") {_TEXTS}(SELECT "id" FROM claimed)',
                               [task_id]))
        return texts or None
    if execute(_CLAIM, [task_id]) != 1:
        return None
    return completion_texts(task_id)


def insert_lease(*, task: ComparisonTask, annotator, project_id: int, label_order: list[int], leased_at: datetime,
                 leased_until: datetime) -> Assignment:
    values = {"task_id": task.pk, "annotator_id": annotator.pk, "project_id": project_id, "state": LEASED,
              "label_order": label_order, "leased_at": leased_at, "leased_until": leased_until, "finished_at": None}
    (pk,) = fetch_one(
        f'INSERT INTO "{A}" ("task_id", "annotator_id", "project_id", "state", "label_order", "leased_at", '
        f'"leased_until", "finished_at") VALUES (%s, %s, %s, %s, %s, %s, %s, NULL) RETURNING "id"',
        [task.pk, annotator.pk, project_id, LEASED, db_json(label_order), db_datetime(leased_at),
         db_datetime(leased_until)],
    )
    assignment = instance(Assignment, {"id": pk, **values})
    assignment.task = task
    return assignment


@functools.cache
def _lease_of_sql() -> str:
    return f'SELECT {ASSIGNMENT.select_list("a")} FROM "{A}" a WHERE a."task_id" = %s AND a."annotator_id" = %s LIMIT 1'


def lease_of(*, task_id: int, annotator_id: int) -> Assignment | None:
    """The annotator's assignment of the task, row-locked on PostgreSQL (one submit at a time per lease)."""
    row = fetch_one(_lease_of_sql() + _row_lock(), [task_id, annotator_id])
    return None if row is None else ASSIGNMENT.build(row)


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({", ".join(["%s"] * len(columns))}) RETURNING "id"'


_MARK_SUBMITTED = f'UPDATE "{A}" SET "state" = \'{SUBMITTED}\', "finished_at" = %s WHERE "id" = %s'
# SET expressions read the row as it was: done + 1 >= needed  <=>  done >= needed - 1.
_COUNT_AND_COMPLETE = (f'UPDATE "{T}" SET "judgements_done" = "judgements_done" + 1, "status" = CASE WHEN '
                       f'("status" = \'{OPEN}\' AND "judgements_done" >= "judgements_needed" - 1) THEN \'{COMPLETE}\' '
                       f'ELSE "status" END WHERE "id" = %s')


def record_judgement(*, values: dict, assignment_id: int, now: datetime, count_task_id: int | None) -> Judgement:
    """INSERT one judgement (all columns but the id; created_at as auto_now_add sets it), mark its assignment
    submitted and, given `count_task_id`, count it on the task and complete the task when it has all it needs.
    PostgreSQL: one statement (data-modifying CTEs); SQLite: three."""
    values = {**values, "created_at": timezone.now()}
    columns = tuple(values)
    params = [db_json(values[c]) if c in ("ranking", "ranking_labels", "flags") else
              db_datetime(values[c]) if c == "created_at" else values[c] for c in columns]
    writes = [(_MARK_SUBMITTED, [db_datetime(now), assignment_id])]
    if count_task_id is not None:
        writes.append((_COUNT_AND_COMPLETE, [count_task_id]))
    if connection.vendor == "postgresql":
        ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(writes))
        (pk,) = fetch_one(f"WITH j AS ({_insert_sql(J, columns)}), {ctes} SELECT \"id\" FROM j",
                          params + [p for _, write_params in writes for p in write_params])
    else:
        (pk,) = fetch_one(_insert_sql(J, columns), params)
        for sql, write_params in writes:
            execute(sql, write_params)
    return instance(Judgement, {"id": pk, **values})
