"""Prompts in: importing validated rows (all or nothing, bulk writes), and single comparison tasks."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Sequence

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from core.audit import record_audit
from core.models import AuditEvent
from feedback.importing import ID_REPEATS, MAX_ERRORS_REPORTED, PromptRow
from feedback.models import ComparisonTask, Completion, Project, Prompt
from feedback.services.prompt_writes import (
    allocate_ids, end_seen_ids, existing_keys, is_postgres, prep_json, record_seen_ids, restore_reference_checks,
    skip_reference_checks, sqlite_reference_checks_off, start_seen_ids, write_rows,
)

TASK_COMPLETIONS_RANGE = "A comparison task shows 2 to 4 completions."
IMPORT_BATCH_ROWS = 20_000
IMPORT_LOCK_CLASS = 0x1A9F  # pg_advisory_xact_lock(class, project id): this number marks "prompt import" locks


@dataclass(frozen=True)
class ImportResult:
    prompts_created: int
    completions_created: int
    tasks_created: int
    rows_skipped: int

    def as_dict(self) -> dict:
        return {
            "prompts_created": self.prompts_created,
            "completions_created": self.completions_created,
            "tasks_created": self.tasks_created,
            "rows_skipped": self.rows_skipped,
        }


def _insert_many(model, columns: list[str], values: list[tuple], batch: int = 5000) -> None:
    """INSERT rows with executemany, bypassing per-object ORM compilation (used by benchmarks' set-up).

    JSON values go through the field's get_db_prep_save, so they are adapted per backend; callers
    pass datetimes already adapted (`connection.ops.adapt_datetimefield_value`).
    """
    if not values:
        return
    fields = [model._meta.get_field(c) for c in columns]
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(fields))})"
    needs_prep = [f.get_internal_type() == "JSONField" for f in fields]
    with connection.cursor() as cursor:
        for start in range(0, len(values), batch):
            chunk = [
                tuple(f.get_db_prep_save(v, connection) if prep else v for f, prep, v in zip(fields, needs_prep, row))
                for row in values[start : start + batch]
            ]
            cursor.executemany(sql, chunk)


class _Seen:
    """Duplicate checks for one import, done by the database so memory stays flat however long the file.

    Earlier batches of this import are already written in the same transaction, so the project's unique
    indexes answer "is this id or content already here?" for them as for older rows; repeated ids are
    looked up in a temporary table (`prompt_writes.record_seen_ids`). Only the batch in hand is held."""

    def __init__(self, project: Project, *, one_batch: bool = False):
        self.project_id = project.pk
        self.project_had_prompts = Prompt.objects.filter(project=project).exists()
        self.batches_written = 0
        self.one_batch = one_batch  # no earlier batch to remember ids of: the temporary table is not needed

    def fresh(self, rows: list[PromptRow]) -> list[PromptRow]:
        """The rows whose external id and content are new to the project and to the rows before them.
        Raises ValidationError naming the lines when an id repeats one read earlier (refused, not skipped)."""
        _refuse_repeated_ids(rows, across_batches=not self.one_batch)
        in_db_ids, in_db_hashes = set(), set()
        # Into a project that was empty, an id already in the table came from this import, so the temporary
        # table has refused it as a repeat above: the id look-up is needed only when the project had prompts.
        if self.project_had_prompts:
            ids = sorted({r.external_id for r in rows if r.external_id})
            in_db_ids = existing_keys(Prompt, project_id=self.project_id, column="external_id", values=ids)
        if self.project_had_prompts or self.batches_written:
            hashes = sorted({r.content_hash for r in rows})
            in_db_hashes = existing_keys(Prompt, project_id=self.project_id, column="content_hash", values=hashes)
        self.batches_written += 1
        batch_ids, batch_hashes, fresh = set(), set(), []
        for row in rows:
            content_hash, external_id = row.content_hash, row.external_id
            if content_hash in batch_hashes or content_hash in in_db_hashes or (
                    external_id and (external_id in batch_ids or external_id in in_db_ids)):
                continue
            fresh.append(row)
            batch_hashes.add(content_hash)
            if external_id:
                batch_ids.add(external_id)
        return fresh


def _refuse_repeated_ids(rows: list[PromptRow], *, across_batches: bool = True) -> None:
    """Ids repeated within `rows`, and (`across_batches`) ids of rows read in an earlier batch of this import."""
    first_line: dict[str, int] = {}
    repeats = []  # (line, id, line first seen on)
    for row in rows:
        if row.external_id:
            if row.external_id in first_line:
                repeats.append((row.line, row.external_id, first_line[row.external_id]))
            else:
                first_line[row.external_id] = row.line
    earlier = record_seen_ids(list(first_line.items())) if across_batches else {}
    for external_id, line in earlier.items():
        repeats.append((first_line[external_id], external_id, line))
    if repeats:
        raise ValidationError({"file": [ID_REPEATS.format(line=line, id=external_id, first=first)
                                        for line, external_id, first in sorted(repeats)[:MAX_ERRORS_REPORTED]]})


def _serialise_imports(project: Project) -> None:
    """Hold the project's import lock until the transaction ends (PostgreSQL; SQLite's IMMEDIATE transactions
    already let one writer in at a time). Two imports checking for duplicates at once would each find none
    and then collide on the unique index at commit; serialised, the second sees the first's rows and skips
    them. An advisory lock, not a row lock on the project: annotators and other writers never wait on it."""
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [IMPORT_LOCK_CLASS, project.pk])


def import_prompts(
    *, project: Project, rows: Iterable[PromptRow], progress=None, actor=None, source: str = ""
) -> ImportResult:
    """Write validated rows (parsed and checked by `feedback.importing`) in one transaction: all or nothing,
    bulk writes (PostgreSQL `COPY`, SQLite `executemany`), no duplicates.

    `rows` may be a list or a generator (`feedback.importing.iter_rows`): it is consumed in batches, and
    a ValidationError it raises part-way rolls back every batch already written; so does an id that repeats an
    earlier line (checked here, in the database, for readers that do not remember ids). A row whose external id
    or prompt content already exists in the project (or earlier in the file) is skipped, so importing the
    same file twice changes nothing. Rows with 2–4 completions become comparison tasks at once; rows
    without completions wait for the policy to sample them.
    """
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    totals = [0, 0, 0, 0]  # prompts, completions, tasks, rows read
    # Rows already in a list that fits one batch (the upload page and the API) are checked for repeated ids in
    # memory alone; a stream of batches remembers the ids it has read in a temporary table.
    one_batch = isinstance(rows, list) and len(rows) <= IMPORT_BATCH_ROWS
    rows = iter(rows)
    with sqlite_reference_checks_off(), transaction.atomic():
        _serialise_imports(project)
        checks_off = skip_reference_checks(connection.ops.quote_name(Project._meta.db_table), project.pk)
        if not one_batch:
            start_seen_ids()
        seen = _Seen(project, one_batch=one_batch)
        while batch := list(islice(rows, IMPORT_BATCH_ROWS)):
            fresh = seen.fresh(batch)
            created = _write_batch(project, fresh, now)
            totals = [a + b for a, b in zip(totals, (*created, len(batch)))]
            if progress:
                progress(len(batch))
            del batch, fresh  # before the next batch is read: one batch in memory at a time, not two
        if not one_batch:
            end_seen_ids()
        if checks_off:
            restore_reference_checks()
        result = ImportResult(prompts_created=totals[0], completions_created=totals[1], tasks_created=totals[2],
                              rows_skipped=totals[3] - totals[0])
        record_audit(actor=actor, event_type=AuditEvent.Type.PROMPTS_IMPORTED, project=project,
                     target=f"project:{project.pk}", extra={**result.as_dict(), "source": source})
    return result


def _write_batch(project: Project, fresh: list[PromptRow], now) -> tuple[int, int, int]:
    """Prompts, their completions, and one open task per prompt with 2–4 completions (linked to them)."""
    prompt_ids = allocate_ids(Prompt, len(fresh))
    empty = prep_json(Prompt, "metadata", {})
    write_rows(Prompt, ["id", "project", "external_id", "text", "messages", "content_hash", "metadata", "created_at"], (
        (pk, project.pk, r.external_id, r.text, prep_json(Prompt, "messages", r.messages), r.content_hash,
         prep_json(Prompt, "metadata", r.metadata) if r.metadata else empty, now)
        for pk, r in zip(prompt_ids, fresh)))
    completion_ids = iter(allocate_ids(Completion, sum(len(r.completions) for r in fresh)))
    with_tasks = [(pk, r) for pk, r in zip(prompt_ids, fresh) if len(r.completions) >= 2]
    links, completions = [], []
    task_ids = allocate_ids(ComparisonTask, len(with_tasks))
    task_of_prompt = {prompt_id: task_id for task_id, (prompt_id, _) in zip(task_ids, with_tasks)}
    for prompt_id, row in zip(prompt_ids, fresh):
        for completion in row.completions:
            completion_id = next(completion_ids)
            completions.append((completion_id, prompt_id, completion.text, completion.model, completion.content_hash))
            if prompt_id in task_of_prompt:
                links.append((task_of_prompt[prompt_id], completion_id))
    generation = prep_json(Completion, "generation", {})
    write_rows(Completion, ["id", "prompt", "text", "model_name", "generation", "content_hash", "created_at"],
               ((pk, prompt_id, text, model, generation, h, now) for pk, prompt_id, text, model, h in completions))
    write_rows(ComparisonTask, ["id", "project", "prompt", "status", "judgements_needed", "judgements_done",
                                "slots_taken", "priority", "is_gold", "created_at"],
               ((task_id, project.pk, prompt_id, ComparisonTask.Status.OPEN.value, project.overlap, 0, 0, 0, False, now)
                for task_id, (prompt_id, _) in zip(task_ids, with_tasks)))
    write_rows(ComparisonTask.completions.through, ["comparisontask", "completion"], links)
    return len(fresh), len(completions), len(with_tasks)


@transaction.atomic
def create_task(*, project: Project, prompt: Prompt, completions: Sequence[Completion], priority: int = 0,
                is_gold: bool = False) -> ComparisonTask:
    if not 2 <= len(completions) <= 4:
        raise ValidationError({"completions": TASK_COMPLETIONS_RANGE})
    task = ComparisonTask.objects.create(
        project=project, prompt=prompt, judgements_needed=project.overlap, priority=priority, is_gold=is_gold
    )
    task.completions.set(completions)
    return task
