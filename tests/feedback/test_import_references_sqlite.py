"""SQLite: an import that is the outermost transaction writes without foreign-key checks (every key it writes is one
it reserved itself, and it holds the write lock throughout). The rows must link exactly as the checks would demand,
and the checks must be back on afterwards, whether the import succeeded or was refused."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from feedback import importing, services
from feedback.models import ComparisonTask
from tests.feedback.test_import_references import _import, _links_are_sound

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the import must be the outermost transaction, as in a request
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's foreign_keys pragma"),
]


def _checks_are_on() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA foreign_keys")
        enabled = cursor.fetchone()[0] == 1
    refused = False
    try:
        with transaction.atomic(), connection.cursor() as cursor:  # the keys are deferred: checked at COMMIT
            cursor.execute("INSERT INTO feedback_comparisontask_completions (comparisontask_id, completion_id)"
                           " VALUES (%s, %s)", [ComparisonTask.objects.first().pk, 10**12])
    except IntegrityError:
        refused = True
    return enabled and refused


def test_imported_rows_link_as_the_foreign_keys_demand_and_the_checks_are_back_on(project):
    result = _import(project)
    assert result.as_dict() == {"prompts_created": 51, "completions_created": 125, "tasks_created": 50,
                                "rows_skipped": 0}
    assert _links_are_sound(project)
    assert _checks_are_on()


def test_a_refused_import_leaves_the_checks_on(project):
    _import(project)
    rows = iter([importing.clean_row({"id": "fine", "prompt": "A fine row"}, 1)])

    def rows_then_a_bad_line():
        yield from rows
        raise ValidationError({"file": ["line 2: bad"]})

    with pytest.raises(ValidationError):
        services.import_prompts(project=project, rows=rows_then_a_bad_line())
    assert _checks_are_on()
