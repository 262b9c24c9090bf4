"""The two permission-aware lookups of the annotate path as hand-written SQL (see core.rawsql for why): the
project of a next-task request and the task of a submit, each joined to the caller's membership. They answer
what `selectors.projects.get_project_for_user` and `task_for_annotator` answered with the ORM, for non-superusers
(superusers keep the ORM form: they need no membership)."""

from __future__ import annotations

import functools

from core.rawsql import RowReader, fetch_one
from feedback.models import ComparisonTask, Membership, Project

PROJECT = RowReader(Project)
TASK = RowReader(ComparisonTask)

P = Project._meta.db_table
T = ComparisonTask._meta.db_table
M = Membership._meta.db_table


@functools.cache
def _project_sql(by: str) -> str:
    return (f'SELECT {PROJECT.select_list("p")}, m."role" FROM "{P}" p '
            f'INNER JOIN "{M}" m ON m."project_id" = p."id" WHERE p."{by}" = %s AND m."user_id" = %s LIMIT 1')


def member_project(*, user_id: int, pk: int | None = None, slug: str | None = None) -> tuple[Project, str] | None:
    """(project, the user's role there) by id or slug; None when there is no such project or no membership."""
    row = fetch_one(_project_sql("id" if pk is not None else "slug"), [pk if pk is not None else slug, user_id])
    if row is None:
        return None
    return PROJECT.build(row[:-1]), row[-1]


@functools.cache
def _task_sql() -> str:
    return (f'SELECT {TASK.select_list("t")}, {PROJECT.select_list("p")}, m."role" FROM "{T}" t '
            f'INNER JOIN "{P}" p ON p."id" = t."project_id" '
            f'INNER JOIN "{M}" m ON m."project_id" = t."project_id" WHERE t."id" = %s AND m."user_id" = %s LIMIT 1')


def member_task(*, user_id: int, task_id: int) -> tuple[ComparisonTask, str] | None:
    """(task with its project, the user's role in that project); None for a missing task or a non-member."""
    row = fetch_one(_task_sql(), [task_id, user_id])
    if row is None:
        return None
    task = TASK.build(row[:len(TASK)])
    task.project = PROJECT.build(row[len(TASK):-1])
    return task, row[-1]
