"""A project of n judged pairs inserted with executemany (tasks of two completions, one judgement each), for the
benches that measure what is done with judgements (export, stored snapshot rows). Import after django.setup().

    insert_judged_pairs(n, prompt_text=lambda i: ..., answer_text=lambda i, j: ...)  # → the project
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection, transaction
from django.utils import timezone

from feedback import services
from feedback.models import Assignment, ComparisonTask, Completion, Judgement, Prompt
from feedback.services.prompts import _insert_many
from tests.feedback.factories import UserFactory


def _first_id(model) -> int:
    return model.objects.order_by("id").values_list("id", flat=True).first()


def insert_judged_pairs(n: int, *, prompt_text: Callable[[int], str], answer_text: Callable[[int, int], str]):
    project = services.create_project(slug="bench", overlap=1)
    user = UserFactory()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic():
        _insert_many(Prompt, ["project", "external_id", "text", "messages", "content_hash", "metadata", "created_at"],
                     [(project.pk, f"p{i}", prompt_text(i), None, f"h{i}", {}, now) for i in range(n)])
        first_prompt = _first_id(Prompt)
        _insert_many(Completion, ["prompt", "text", "model_name", "generation", "content_hash", "created_at"],
                     [(first_prompt + i, answer_text(i, j), f"model-{j}", {}, f"c{i}-{j}", now)
                      for i in range(n) for j in range(2)])
        _insert_many(ComparisonTask, ["project", "prompt", "status", "judgements_needed", "judgements_done",
                                      "slots_taken", "priority", "is_gold", "created_at"],
                     [(project.pk, first_prompt + i, "complete", 1, 1, 1, 0, False, now) for i in range(n)])
        first_task, first_completion = _first_id(ComparisonTask), _first_id(Completion)
        _insert_many(ComparisonTask.completions.through, ["comparisontask", "completion"],
                     [(first_task + i, first_completion + 2 * i + j) for i in range(n) for j in range(2)])
        _insert_many(Assignment, ["task", "annotator", "project", "state", "label_order", "leased_at", "leased_until",
                                  "finished_at"],
                     [(first_task + i, user.pk, project.pk, "submitted",
                       [first_completion + 2 * i, first_completion + 2 * i + 1], now, now, now) for i in range(n)])
        first_assignment = _first_id(Assignment)
        _insert_many(Judgement, ["task", "annotator", "assignment", "ranking", "ranking_labels", "flags", "confidence",
                                 "comment", "seconds_spent", "idempotency_key", "created_at"],
                     [(first_task + i, user.pk, first_assignment + i,
                       [[first_completion + 2 * i + (i % 2)], [first_completion + 2 * i + 1 - (i % 2)]],
                       [["a"], ["b"]], [], 3, "", 5.0, "", now) for i in range(n)])
    return project
