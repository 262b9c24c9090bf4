"""What an export reads: the judgements in its scope, and the prompts, completions, adjudications and trust a
batch of its tasks needs (`feedback.exports.rows` turns them into rows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from feedback.models import (
    Adjudication, ComparisonTask, Completion, Judgement, Membership, PreferenceSnapshot, Project,
    Prompt, split_key_of,
)

SINCE_SNAPSHOT_UNKNOWN = "No complete snapshot {pk} in this project."


def complete_snapshot(*, project: Project, pk: int) -> PreferenceSnapshot | None:
    """A snapshot that covers its judgements (its files, if any, were written whole)."""
    return PreferenceSnapshot.objects.filter(pk=pk, project=project, state=PreferenceSnapshot.State.COMPLETE).first()


def judgements_in_scope(*, project: Project, only_trusted: bool = False, trust_threshold: float = 0.5,
                        since_snapshot: int | None = None) -> QuerySet[Judgement]:
    """The judgements an export may hold: non-gold, from trusted annotators if asked, newer than a complete snapshot."""
    qs = Judgement.objects.filter(task__project=project, task__is_gold=False)
    if only_trusted:
        trusted = Membership.objects.filter(project=project, trust__gte=trust_threshold).values("user_id")
        qs = qs.filter(annotator_id__in=trusted)
    if since_snapshot is not None:
        previous = complete_snapshot(project=project, pk=since_snapshot)
        if previous is None:
            raise ValidationError({"since_snapshot": SINCE_SNAPSHOT_UNKNOWN.format(pk=since_snapshot)})
        qs = qs.filter(pk__gt=previous.counts.get("max_judgement_id", 0))
    return qs


class PromptInfo(NamedTuple):
    pk: int
    key: str  # `split_key_of(external id, pk)`: what the split hashes and rows name
    text: str
    messages: list | None


class CompletionInfo(NamedTuple):
    pk: int
    text: str
    model: str


@dataclass(frozen=True)
class ExportBatch:
    """What the rows of a batch of tasks need, read in a handful of queries."""

    prompt_of_task: dict[int, PromptInfo]
    completions: dict[int, CompletionInfo]
    adjudicated: dict[int, list]
    trust: dict[int, float]


def export_batch(*, project_id: int, task_ids: list[int]) -> ExportBatch:
    prompt_ids = dict(ComparisonTask.objects.filter(pk__in=task_ids).values_list("id", "prompt_id"))
    prompts = {
        pk: PromptInfo(pk, split_key_of(external_id, pk), text, messages)
        for pk, external_id, text, messages in
        Prompt.objects.filter(pk__in=set(prompt_ids.values())).values_list("id", "external_id", "text", "messages")
    }
    through = ComparisonTask.completions.through.objects.filter(comparisontask_id__in=task_ids)
    completions = {
        pk: CompletionInfo(pk, text, model)
        for pk, text, model in Completion.objects.filter(pk__in=through.values("completion_id"))
        .values_list("id", "text", "model_name")
    }
    return ExportBatch(
        prompt_of_task={task: prompts[prompt] for task, prompt in prompt_ids.items()},
        completions=completions,
        adjudicated=dict(Adjudication.objects.filter(task_id__in=task_ids).values_list("task_id", "ranking")),
        trust=dict(Membership.objects.filter(project_id=project_id).values_list("user_id", "trust")),
    )


def has_chat_prompts(*, project_id: int) -> bool:
    return Prompt.objects.filter(project_id=project_id, messages__isnull=False).exists()
