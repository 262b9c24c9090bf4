"""PostgreSQL: an import turns the per-row foreign-key checks off while it writes (where the role may), because every
key it writes is one it reserved itself. The rows must link exactly as the checks would demand, the checks must be
back on for whatever the transaction does next, and a role that may not turn them off imports all the same."""

import io
import json
import os

import pytest
from django.db import IntegrityError, connection, transaction

from feedback import importing, services
from feedback.models import ComparisonTask, Completion, Prompt, TaskCompletion

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL foreign-key checks and roles")

ROWS = [{"id": f"r-{i}", "prompt": f"Question {i}?", "completions": [f"yes {i}", f"no {i}", f"maybe {i}"][: 2 + i % 2]}
        for i in range(50)] + [{"id": "bare", "prompt": "No completions yet"}]


def _import(project):
    rows = importing.read_rows(io.BytesIO("\n".join(json.dumps(r) for r in ROWS).encode()), "jsonl")
    return services.import_prompts(project=project, rows=rows)


def _links_are_sound(project) -> bool:
    """Every task and completion hangs off a prompt of the project, and a task shows only its prompt's completions."""
    prompts = set(Prompt.objects.filter(project=project).values_list("pk", flat=True))
    completion_prompt = dict(Completion.objects.values_list("pk", "prompt_id"))
    task_prompt = dict(ComparisonTask.objects.filter(project=project).values_list("pk", "prompt_id"))
    links = list(TaskCompletion.objects.values_list("comparisontask_id", "completion_id"))
    return (set(completion_prompt.values()) <= prompts and set(task_prompt.values()) <= prompts
            and all(completion_prompt.get(c) == task_prompt.get(t) for t, c in links)
            and len(links) == Completion.objects.filter(prompt__tasks__isnull=False).count())


def test_imported_rows_link_as_the_foreign_keys_demand_and_the_checks_are_back_on(project):
    result = _import(project)
    assert result.as_dict() == {"prompts_created": 51, "completions_created": 125, "tasks_created": 50,
                                "rows_skipped": 0}
    assert _links_are_sound(project)
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone()[0] == "origin"
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with pytest.raises(IntegrityError), transaction.atomic():  # a dangling key is refused again at once
            cursor.execute("INSERT INTO feedback_comparisontask_completions (comparisontask_id, completion_id)"
                           " VALUES (%s, %s)", [ComparisonTask.objects.first().pk, 10**12])


def test_a_role_that_may_not_turn_the_checks_off_imports_all_the_same(project):
    role = f"import_plain_{os.getpid()}"
    with connection.cursor() as cursor:  # all inside the test's transaction: rolled back, role included
        cursor.execute(f"CREATE ROLE {role} NOSUPERUSER")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        cursor.execute(f"SET ROLE {role}")
    try:
        result = _import(project)
        again = _import(project)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert result.prompts_created == 51 and result.tasks_created == 50
    assert again.rows_skipped == 51 and again.prompts_created == 0
    assert _links_are_sound(project)
