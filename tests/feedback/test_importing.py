import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from feedback import importing, services
from feedback.models import ComparisonTask, Completion, Prompt

ROWS = [
    {"id": "q-1", "prompt": "What is 2+2?", "completions": [{"text": "4", "model": "a"}, {"text": "5", "model": "b"}],
     "metadata": {"topic": "math"}},
    {"id": "q-2", "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
    {"prompt": "No id here", "completions": ["x", "y", "z"]},
]


def jsonl(rows) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def test_jsonl_rows_import_once(project):
    rows = importing.read_rows(io.BytesIO(jsonl(ROWS)), "jsonl")
    result = services.import_prompts(project=project, rows=rows)
    assert result.as_dict() == {"prompts_created": 3, "completions_created": 5, "tasks_created": 2, "rows_skipped": 0}
    chat = Prompt.objects.get(external_id="q-2")
    assert chat.messages[1] == {"role": "user", "content": "Hi"} and chat.payload == chat.messages
    assert Prompt.objects.get(external_id="q-1").metadata == {"topic": "math"}
    task = ComparisonTask.objects.get(prompt__external_id="q-1")
    assert task.judgements_needed == project.overlap
    assert sorted(task.completions.values_list("model_name", flat=True)) == ["a", "b"]
    again = services.import_prompts(project=project, rows=importing.read_rows(io.BytesIO(jsonl(ROWS)), "jsonl"))
    assert again.as_dict() == {"prompts_created": 0, "completions_created": 0, "tasks_created": 0, "rows_skipped": 3}
    assert Prompt.objects.count() == 3 and ComparisonTask.objects.count() == 2


@pytest.mark.parametrize("line,expected", [
    ('{"id": "x"}', "line 2: field 'prompt' is required"),
    ('{"prompt": ""}', "line 2: field 'prompt' must not be empty"),
    ('{"prompt": 5}', "line 2: field 'prompt' must be a string, got int"),
    ('{"prompt": "p", "completions": [{"text": "a"}]}', "line 2: field 'completions' must hold 2 to 4"),
    ('{"prompt": "p", "completions": ["a","b","c","d","e"]}', "line 2: field 'completions' must hold 2 to 4"),
    ('{"prompt": "p", "completions": [{"text": ""}, {"text": "b"}]}', "line 2: field 'completions[0].text' must not be empty"),
    ('{"prompt": [{"role": "wizard", "content": "x"}]}', "line 2: field 'prompt[0].role' must be one of"),
    ('{"prompt": "p", "extra": 1}', "line 2: field 'extra' is not a known field"),
    ('{"prompt": "nul\\u0000"}', "line 2: field 'prompt' must not contain NUL"),
    ('{"prompt": "p", "metadata": []}', "line 2: field 'metadata' must be an object"),
    ('{not json', "line 2: field 'row' is not valid JSON"),
    ('[1, 2]', "line 2: field 'row' must be a JSON object"),
    ('{"id": "q-1", "prompt": "dup id"}', "line 2: field 'id' 'q-1' repeats line 1"),
])
def test_bad_line_is_named_and_nothing_is_imported(project, line, expected):
    data = json.dumps(ROWS[0]) + "\n" + line + "\n"
    with pytest.raises(ValidationError) as excinfo:
        importing.read_rows(io.BytesIO(data.encode()), "jsonl")
    assert excinfo.value.message_dict["file"][0].startswith(expected)
    assert not Prompt.objects.exists()


def test_csv_and_parquet_columns(project, tmp_path):
    header = ["id", "prompt", "completion_1", "model_1", "completion_2", "model_2"]
    records = [["c-1", "Hello?", "Hi", "m1", "Hey", "m2"], ["c-2", '[{"role": "user", "content": "chat"}]', "", "", "", ""]]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(records)
    rows = importing.read_rows(io.BytesIO(buffer.getvalue().encode()), "csv")
    assert [r.external_id for r in rows] == ["c-1", "c-2"]
    assert rows[1].messages == [{"role": "user", "content": "chat"}]
    assert [c.model for c in rows[0].completions] == ["m1", "m2"]

    table = pa.table({k: [r[i] for r in records] for i, k in enumerate(header)})
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path)
    with path.open("rb") as fh:
        parquet_rows = importing.read_rows(fh, "parquet")
    assert [r.content_hash for r in parquet_rows] == [r.content_hash for r in rows]


def test_csv_bad_line_number(project):
    data = "id,prompt,completion_1,model_1\nr1,ok,,\nr2,,,\n"
    with pytest.raises(ValidationError) as excinfo:
        importing.read_rows(io.BytesIO(data.encode()), "csv")
    assert excinfo.value.message_dict["file"][0].startswith("line 3: field 'prompt' must not be empty")


def test_command_imports_and_reports(project, tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(jsonl(ROWS))
    call_command("import_prompts", str(path), "--project", project.slug, verbosity=0)
    assert "imported 3 prompts" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": ""}\n')
    with pytest.raises(CommandError, match="line 2: field 'prompt'"):
        call_command("import_prompts", str(bad), "--project", project.slug, verbosity=0)
    assert Prompt.objects.count() == 3
    with pytest.raises(CommandError, match="No project"):
        call_command("import_prompts", str(path), "--project", "missing")


def test_large_import_uses_bulk_writes(project, django_assert_max_num_queries):
    rows = [importing.clean_row({"id": f"r{i}", "prompt": f"p{i}", "completions": ["a", "b"]}, i + 1) for i in range(5000)]
    # Bulk inserts: SQLite caps parameters per statement (999), so batches are small, but never one per row.
    with django_assert_max_num_queries(len(rows) // 10):
        services.import_prompts(project=project, rows=rows)
    assert Completion.objects.count() == 10_000 and ComparisonTask.objects.count() == 5000
