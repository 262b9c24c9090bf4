"""Every prompt import inserts into each index of four tables: none of them holds a foreign-key index that a unique
index leading with the same column already serves (migration 0009), and the one a query needs is still there."""

from django.db import connection

from feedback.models import ComparisonTask, Completion, Prompt, TaskCompletion


def _indexes(model) -> list[tuple[list[str], bool]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return [(info["columns"], bool(info["unique"])) for info in found.values()
            if (info["index"] or info["unique"]) and not info["primary_key"]]


def test_foreign_keys_served_by_a_unique_index_have_no_index_of_their_own(db):
    for model, column in ((Prompt, "project_id"), (Completion, "prompt_id"), (TaskCompletion, "comparisontask_id")):
        indexes = _indexes(model)
        assert ([column], False) not in indexes, (model, indexes)
        assert any(unique and columns[0] == column for columns, unique in indexes), (model, indexes)


def test_the_task_browser_keeps_the_project_index_it_pages_with(db):
    # SQLite pages a project's tasks in id order with (project_id, rowid); without it, a table scan.
    assert (["project_id"], False) in _indexes(ComparisonTask)
