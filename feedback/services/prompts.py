"""Prompts in: importing validated rows (all or nothing, bulk inserts), and single comparison tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from core.audit import record_audit
from core.models import AuditEvent
from feedback.importing import PromptRow
from feedback.models import ComparisonTask, Completion, Project, Prompt

TASK_COMPLETIONS_RANGE = "A comparison task shows 2 to 4 completions."


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
    """INSERT rows with executemany, bypassing per-object ORM compilation (100k rows in seconds).

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


def import_prompts(
    *, project: Project, rows: Iterable[PromptRow], progress=None, actor=None, source: str = ""
) -> ImportResult:
    """Write validated rows (parsed and checked by `feedback.importing`) in one transaction: all or nothing,
    bulk inserts, no duplicates.

    A row whose external id or prompt content already exists in the project is skipped, so importing
    the same file twice changes nothing. Rows with 2–4 completions become comparison tasks at once;
    rows without completions wait for the policy to sample them.
    """
    rows = list(rows)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic():
        fresh = _rows_not_yet_imported(project, rows)
        prompt_ids = _insert_prompts(project, fresh, now)
        if progress:
            progress(len(fresh))
        completions_created = _insert_completions(project, fresh, prompt_ids, now)
        tasks_created = _insert_tasks(project, fresh, prompt_ids, now)
        result = ImportResult(prompts_created=len(fresh), completions_created=completions_created,
                              tasks_created=tasks_created, rows_skipped=len(rows) - len(fresh))
        record_audit(actor=actor, event_type=AuditEvent.Type.PROMPTS_IMPORTED, project=project,
                     target=f"project:{project.pk}", extra={**result.as_dict(), "source": source})
    return result


def _rows_not_yet_imported(project: Project, rows: list[PromptRow]) -> list[PromptRow]:
    """The rows whose external id and content are new to the project (and to the rows before them)."""
    existing = Prompt.objects.filter(project=project)
    seen_ids = set(existing.exclude(external_id="").values_list("external_id", flat=True))
    seen_hashes = set(existing.values_list("content_hash", flat=True))
    fresh = []
    for row in rows:
        if (row.external_id and row.external_id in seen_ids) or row.content_hash in seen_hashes:
            continue
        fresh.append(row)
        seen_hashes.add(row.content_hash)
        if row.external_id:
            seen_ids.add(row.external_id)
    return fresh


def _insert_prompts(project: Project, fresh: list[PromptRow], now) -> dict[str, int]:
    """Insert the prompts; returns {content hash: prompt id} of the new ones."""
    _insert_many(
        Prompt, ["project", "external_id", "text", "messages", "content_hash", "metadata", "created_at"],
        [(project.pk, r.external_id, r.text, r.messages, r.content_hash, r.metadata, now) for r in fresh],
    )
    fresh_hashes = {r.content_hash for r in fresh}
    return {h: pk for pk, h in Prompt.objects.filter(project=project).values_list("id", "content_hash") if h in fresh_hashes}


def _insert_completions(project: Project, fresh: list[PromptRow], prompt_ids: dict[str, int], now) -> int:
    values = [(prompt_ids[r.content_hash], c.text, c.model, {}, c.content_hash, now) for r in fresh for c in r.completions]
    _insert_many(Completion, ["prompt", "text", "model_name", "generation", "content_hash", "created_at"], values)
    return len(values)


def _insert_tasks(project: Project, fresh: list[PromptRow], prompt_ids: dict[str, int], now) -> int:
    """One open task per new prompt with 2–4 completions, linked to those completions."""
    with_tasks = [r for r in fresh if len(r.completions) >= 2]
    if not with_tasks:
        return 0
    new_prompt_ids = set(prompt_ids.values())
    _insert_many(
        ComparisonTask,
        ["project", "prompt", "status", "judgements_needed", "judgements_done", "slots_taken", "priority",
         "is_gold", "created_at"],
        [(project.pk, prompt_ids[r.content_hash], ComparisonTask.Status.OPEN, project.overlap, 0, 0, 0, False, now)
         for r in with_tasks],
    )
    completion_id = {
        (prompt_id, h): pk
        for pk, prompt_id, h in Completion.objects.filter(prompt__project=project).values_list("id", "prompt_id", "content_hash")
        if prompt_id in new_prompt_ids
    }
    task_id = {
        prompt_id: pk
        for pk, prompt_id in ComparisonTask.objects.filter(project=project).values_list("id", "prompt_id")
        if prompt_id in new_prompt_ids
    }
    links = [
        (task_id[prompt_ids[r.content_hash]], completion_id[(prompt_ids[r.content_hash], c.content_hash)])
        for r in with_tasks for c in r.completions
    ]
    _insert_many(ComparisonTask.completions.through, ["comparisontask", "completion"], links)
    return len(with_tasks)


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
