"""Published samples: a policy's completions stored and turned into comparison tasks in one transaction."""

from __future__ import annotations

from django.db import transaction

from core.audit import record_audit
from core.models import AuditEvent
from training import selectors
from training.models import ModelVersion, TrainingRun
from training.services.runs import record_run_start


# --- published samples ------------------------------------------------------------------------------------------


def publish_prompt(*, project, prompt, samples: list[tuple[str, ModelVersion]], generation: dict,
                   priority: int) -> bool:
    """Store a prompt's sampled completions (once per text and model) and make a comparison task of them,
    together. False (and nothing stored) when fewer than two distinct completions remain."""
    return publish_prompt_task(project=project, prompt=prompt, samples=samples, generation=generation,
                               priority=priority) is not None


@transaction.atomic
def publish_prompt_task(*, project, prompt, samples: list[tuple[str, ModelVersion]], generation: dict,
                        priority: int):
    """`publish_prompt`, returning the ComparisonTask it made (None when fewer than two completions remain)."""
    from feedback import services as feedback_services
    from feedback.importing import CompletionRow
    from feedback.models import Completion

    if len(samples) < 2:
        return None
    completions = [
        Completion.objects.get_or_create(
            prompt=prompt, content_hash=CompletionRow(text=text, model=version.name).content_hash,
            defaults={"text": text, "model_name": version.name, "model_version": version, "generation": generation},
        )[0]
        for text, version in samples[:4]
    ]
    return feedback_services.create_task(project=project, prompt=prompt, completions=completions, priority=priority)


def record_published(*, project, run: TrainingRun, policy: ModelVersion, tasks: int) -> None:
    record_audit(actor=run.created_by, event_type=AuditEvent.Type.SAMPLES_PUBLISHED, project=project,
                 target=f"run:{run.pk}", extra={"policy": policy.name, "tasks": tasks})


def queue_demo_sampling(*, project) -> TrainingRun | None:
    """Queue one publish run that samples completions for the demo's prompts without any (once)."""
    if selectors.active_policy(project=project) is None:
        return None
    if TrainingRun.objects.filter(project=project, kind=TrainingRun.Kind.PUBLISH).exists():
        return None
    return record_run_start(project=project, kind=TrainingRun.Kind.PUBLISH, config={"prompts": "without_completions"})
