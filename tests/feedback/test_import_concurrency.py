"""Two imports into one project at the same moment, through the real API from two threads.

Both files hold many of the same prompts. On PostgreSQL each import used to check for duplicates, find
none (the other had not committed yet), and then hit the unique index at commit: a 500. Imports into one
project are now serialised (a transaction-scoped advisory lock), so the second sees the first's rows and
skips them. SQLite's IMMEDIATE transactions serialise every writer anyway; the test runs on both.
"""

import io
import json
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from feedback.models import ComparisonTask, Completion, Prompt
from tests.feedback.factories import ProjectFactory, make_member

ROWS = 3000


def _file(ids: range) -> io.BytesIO:
    lines = [json.dumps({"id": f"c-{i}", "prompt": f"Prompt {i}: " + "words " * 40,
                         "completions": [f"first answer {i}", f"second answer {i}"]}) for i in ids]
    upload = io.BytesIO("\n".join(lines).encode())
    upload.name = "rows.jsonl"
    return upload


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_imports_into_one_project_both_succeed_without_duplicates():
    project = ProjectFactory(overlap=1)
    admin = make_member(project, "admin")
    files = [_file(range(0, ROWS)), _file(range(ROWS // 2, ROWS + ROWS // 2))]  # half of each is in the other
    start = threading.Barrier(2)
    responses, errors = [None, None], []

    def upload(i):
        client = APIClient()
        client.force_authenticate(admin)
        try:
            start.wait()
            responses[i] = client.post(f"/api/v1/projects/{project.pk}/import/", {"file": files[i]}, format="multipart")
        except BaseException as exc:  # reported below; a thread must not die silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    assert not errors, errors
    assert [r.status_code for r in responses] == [201, 201], [r.content[:300] for r in responses]
    created = sorted(r.json()["prompts_created"] for r in responses)
    skipped = sorted(r.json()["rows_skipped"] for r in responses)
    # Whichever ran second found the shared half already there.
    assert created == [ROWS // 2, ROWS] and skipped == [0, ROWS // 2]
    total = ROWS + ROWS // 2
    assert Prompt.objects.filter(project=project).count() == total
    assert Completion.objects.filter(prompt__project=project).count() == 2 * total
    assert ComparisonTask.objects.filter(project=project).count() == total
