import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from core.models import AuditEvent
from feedback import importing, services
from feedback.importing import readers
from feedback.models import ComparisonTask, Completion, Prompt
from feedback.services import prompts as prompt_services

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


# --- The bulk path stores exactly what the per-row path and the ORM would --------------------------------------

VARIED_CSV = [
    ["id", "prompt", "completion_1", "model_1", "completion_2", "model_2", "completion_3", "model_3", "metadata"],
    ["v-1", "Plain prompt?", "yes", "m1", "no", "m2", "", "", ""],
    ["  v-2  ", "  padded  ", "a", "", "b", "", "c", "", ""],
    ["", "no id, gap", "", "", "left", "m", "right", "m", ""],
    ["v-4", '[{"role": "user", "content": "a chat"}]', "x", "m", "y", "m", "", "", ""],
    ["v-5", "with metadata", "", "", "", "", "", "", '{"topic": "t"}'],
    ["v-6", "é \u2028 \"quoted\" \\ tab\t", "ü", "模型", "ü", "other", "", "", ""],
    ["v-7", "[not json]", "", "", "", "", "", "", ""],
    ["v-8", "no completions", "", "", "", "", "", "", ""],
]


def _reference_rows(records):
    """The per-row path: csv.DictReader, then _tabular_to_raw and clean_row, row by row (hashes via json.dumps)."""
    reader = csv.DictReader(io.StringIO(_csv_text(records)))
    return [importing.clean_row(readers._tabular_to_raw(r), reader.line_num) for r in reader]


def _csv_text(records) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(records)
    return buffer.getvalue()


def _sha(value) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _row_view(row):
    return (row.line, row.external_id, row.text, row.messages, row.metadata, row.content_hash,
            [(c.text, c.model, c.content_hash) for c in row.completions])


def test_column_wise_reading_equals_the_per_row_reading(tmp_path):
    reference = _reference_rows(VARIED_CSV)
    assert [r.content_hash for r in reference] == [_sha(r.messages if r.messages else r.text) for r in reference]
    assert all(c.content_hash == _sha({"text": c.text, "model": c.model}) for r in reference for c in r.completions)
    fast = importing.read_rows(io.BytesIO(_csv_text(VARIED_CSV).encode()), "csv")
    assert [_row_view(r) for r in fast] == [_row_view(r) for r in reference]
    table = pa.table({name: [r[i] or None for r in VARIED_CSV[1:]] for i, name in enumerate(VARIED_CSV[0])})
    pq.write_table(table, tmp_path / "v.parquet")
    with (tmp_path / "v.parquet").open("rb") as fh:
        parquet = importing.read_rows(fh, "parquet")
    assert [_row_view(r)[1:] for r in parquet] == [_row_view(r)[1:] for r in reference]


def _stored(project):
    prompts = {}
    for p in Prompt.objects.filter(project=project).prefetch_related("completions", "tasks__completions"):
        tasks = [(t.status, t.judgements_needed, t.judgements_done, t.slots_taken, t.priority, t.is_gold, t.gold_ranking,
                  sorted(c.content_hash for c in t.completions.all()), t.assignments.count()) for t in p.tasks.all()]
        prompts[p.content_hash] = (p.external_id, p.text, p.messages, p.metadata, tasks, sorted(
            (c.text, c.model_name, c.generation, c.content_hash, c.model_version_id) for c in p.completions.all()))
    return prompts


def test_bulk_writes_store_what_the_orm_does(project):
    from tests.feedback.factories import ProjectFactory

    rows = _reference_rows(VARIED_CSV)
    result = services.import_prompts(project=project, rows=rows)
    other = ProjectFactory(overlap=project.overlap)
    for row in rows:  # the slow path, one ORM call per object
        prompt = Prompt.objects.create(project=other, external_id=row.external_id, text=row.text, messages=row.messages,
                                       metadata=row.metadata, content_hash=row.content_hash)
        made = [Completion.objects.create(prompt=prompt, text=c.text, model_name=c.model, content_hash=c.content_hash)
                for c in row.completions]
        if made:
            services.create_task(project=other, prompt=prompt, completions=made)
    assert _stored(project) == _stored(other)
    assert result.as_dict() == {"prompts_created": 8, "completions_created": 11, "tasks_created": 5, "rows_skipped": 0}
    event = AuditEvent.objects.get(project=project, event_type=AuditEvent.Type.PROMPTS_IMPORTED)
    assert event.extra["prompts_created"] == 8


# --- All or nothing, on a file larger than one write batch ------------------------------------------------------

def _big_file(tmp_path, fmt: str, n: int, bad_line: int):
    records = [{"id": f"big-{i}", "prompt": f"Prompt {i}: " + "words " * 40,
                "completions": [{"text": f"answer {i} a " * 20, "model": "a"}, {"text": f"answer {i} b " * 20, "model": "b"}]}
               for i in range(n)]
    records[bad_line - 1]["completions"][1]["text"] = "   "
    path = tmp_path / f"big.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    else:
        flat = {"id": [r["id"] for r in records], "prompt": [r["prompt"] for r in records]}
        for k in (1, 2):
            flat[f"completion_{k}"] = [r["completions"][k - 1]["text"] for r in records]
            flat[f"model_{k}"] = [r["completions"][k - 1]["model"] for r in records]
        if fmt == "parquet":
            pq.write_table(pa.table(flat), path, row_group_size=1000)
        else:
            path.write_text(_csv_text([list(flat)] + [list(v) for v in zip(*flat.values())]))
    return path


@pytest.mark.parametrize("fmt, line", [("jsonl", 2990), ("csv", 2991), ("parquet", 2990)])
def test_a_bad_row_late_in_a_big_file_imports_nothing(project, tmp_path, monkeypatch, fmt, line):
    monkeypatch.setattr(prompt_services, "IMPORT_BATCH_ROWS", 1000)  # batches 1 and 2 are written before row 2990
    services.import_prompts(project=project, rows=importing.read_rows(io.BytesIO(jsonl(ROWS)), "jsonl"))
    before = (Prompt.objects.count(), Completion.objects.count(), ComparisonTask.objects.count(), AuditEvent.objects.count())
    path = _big_file(tmp_path, fmt, 3000, 2990)
    with pytest.raises(CommandError, match=f"line {line}: field 'completions\\[1\\].text' must not be empty"):
        call_command("import_prompts", str(path), "--project", project.slug, verbosity=0)
    after = (Prompt.objects.count(), Completion.objects.count(), ComparisonTask.objects.count(), AuditEvent.objects.count())
    assert after == before


# --- Duplicates -------------------------------------------------------------------------------------------------

def test_duplicates_within_the_file_across_batches_and_against_the_project(project, monkeypatch):
    from tests.feedback.factories import ProjectFactory

    monkeypatch.setattr(prompt_services, "IMPORT_BATCH_ROWS", 2)
    first = [{"id": "d-1", "prompt": "same text"}, {"id": "d-2", "prompt": "other"},
             {"id": "d-3", "prompt": "same text"},  # content of line 1, in the next batch: skipped
             {"prompt": "other"}]  # content of line 2, no id: skipped
    result = services.import_prompts(project=project, rows=importing.read_rows(io.BytesIO(jsonl(first)), "jsonl"))
    assert result.as_dict() == {"prompts_created": 2, "completions_created": 0, "tasks_created": 0, "rows_skipped": 2}
    second = [{"id": "d-1", "prompt": "new text, old id"}, {"id": "d-9", "prompt": "other"},
              {"id": "d-10", "prompt": "really new", "completions": ["a", "b"]}]
    result = services.import_prompts(project=project, rows=importing.read_rows(io.BytesIO(jsonl(second)), "jsonl"))
    assert result.as_dict() == {"prompts_created": 1, "completions_created": 2, "tasks_created": 1, "rows_skipped": 2}
    assert sorted(Prompt.objects.filter(project=project).values_list("external_id", flat=True)) == ["d-1", "d-10", "d-2"]
    with pytest.raises(ValidationError, match="line 2: field 'id' 'd-1' repeats line 1"):
        importing.read_rows(io.BytesIO(jsonl([{"id": "d-1", "prompt": "x"}, {"id": "d-1", "prompt": "y"}])), "jsonl")
    elsewhere = ProjectFactory()  # another tenant's prompts never count as duplicates
    result = services.import_prompts(project=elsewhere, rows=importing.read_rows(io.BytesIO(jsonl(first)), "jsonl"))
    assert result.prompts_created == 2


@pytest.mark.parametrize("cells", [
    ["x", "\u00a0\u2003", "a", "b"], ["x", "\x1c", "a", "b"], ["x", "p", "a\x00", "b"], ["x", "p", "a", ""],
    ["x", "p", "\u3000", "b"], ["x" * 201, "p", "a", "b"], ["x", "p" * 100_001, "a", "b"], ["x", "p", "a", "a"],
    ["x", ' \u00a0[{"role": "wizard", "content": "c"}]', "a", "b"],
])
def test_column_wise_reading_refuses_what_the_per_row_reading_refuses(cells):
    records = [["id", "prompt", "completion_1", "completion_2"], ["ok", "fine", "a", "b"], cells]
    try:
        _reference_rows(records)
    except importing.RowError as exc:
        expected = f"line 3: field '{exc.field_name}' {exc.message}"
    with pytest.raises(ValidationError) as info:
        importing.read_rows(io.BytesIO(_csv_text(records).encode()), "csv")
    assert info.value.message_dict["file"] == [expected]


@pytest.mark.parametrize("raw", [
    *ROWS, {"id": " s ", "prompt": "p", "completions": [{"text": "a"}, {"text": "b", "model": None}], "metadata": None},
    {"id": 7, "prompt": "int id"}, {"prompt": "p", "completions": []}, {"prompt": "\u2003"}, {"prompt": "p", "id": None},
    {"prompt": "p", "completions": [{"text": "a", "model": 5}, "b"]}, {"prompt": "p", "completions": ["a", "a"]},
    {"prompt": "p", "metadata": []}, {"prompt": "p", "completions": [{"text": " "}, "b"]},
])
def test_plain_jsonl_rows_are_built_as_clean_row_builds_them(raw):
    fast = importing.plain_json_row(raw, 4)
    try:
        reference = importing.clean_row(raw, 4)
    except importing.RowError:
        assert fast is None
    else:
        assert fast is None or _row_view(fast) == _row_view(reference)


def test_a_repeated_id_across_batches_of_a_streamed_file_names_both_lines_and_imports_nothing(project, tmp_path,
                                                                                                monkeypatch):
    # The command streams the file and leaves repeated ids to the writer's database look-up (nothing held in
    # memory per row): a repeat in a later batch is still refused with both lines, and every batch rolls back.
    monkeypatch.setattr(prompt_services, "IMPORT_BATCH_ROWS", 2)
    rows = [{"id": "s-1", "prompt": "one"}, {"id": "s-2", "prompt": "two"}, {"id": "s-3", "prompt": "one"},
            {"id": "s-4", "prompt": "four"}, {"id": "s-3", "prompt": "five"}, {"id": "s-1", "prompt": "six"}]
    path = tmp_path / "repeats.jsonl"
    path.write_bytes(jsonl(rows))
    with pytest.raises(CommandError) as excinfo:
        call_command("import_prompts", str(path), "--project", project.slug, verbosity=0)
    # s-3 first came on line 3 (skipped there as a content duplicate of line 1, yet read): still a repeat.
    assert "line 5: field 'id' 's-3' repeats line 3" in str(excinfo.value)
    assert "line 6: field 'id' 's-1' repeats line 1" in str(excinfo.value)
    assert not Prompt.objects.exists()
    path.write_bytes(jsonl(rows[:4]))
    call_command("import_prompts", str(path), "--project", project.slug, verbosity=0)
    call_command("import_prompts", str(path), "--project", project.slug, verbosity=0)  # again: ids now in the project
    assert sorted(Prompt.objects.values_list("external_id", flat=True)) == ["s-1", "s-2", "s-4"]


@pytest.mark.parametrize("text", ["plain words", "", "quote \" inside", "back\\slash", "tab\tand\nnewline", "\x1f unit",
                                  "é 模型 🙂", "\u2028 line separator", "\x7f delete", "\u00a0 no-break"])
def test_content_hashes_are_the_sha256_of_the_json_the_orm_path_hashes(text):
    from feedback.importing.rows import completion_hash, text_hash

    assert text_hash(text) == _sha(text)
    assert completion_hash(text, text) == _sha({"text": text, "model": text})
    assert completion_hash("answer", text) == _sha({"text": "answer", "model": text})


def test_a_list_of_rows_with_a_repeated_id_is_refused_by_the_service_itself(project):
    """Rows handed over as one list (no reader that remembered ids): the service names both lines, imports nothing."""
    rows = [importing.clean_row({"id": "same", "prompt": f"text {i}"}, i + 1) for i in range(3)]
    with pytest.raises(ValidationError) as excinfo:
        services.import_prompts(project=project, rows=rows)
    assert "line 2: field 'id' 'same' repeats line 1" in str(excinfo.value)
    assert "line 3: field 'id' 'same' repeats line 1" in str(excinfo.value)
    assert not Prompt.objects.filter(project=project).exists()
