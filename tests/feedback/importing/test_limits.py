"""Each import format's limits: refused with a 400 naming the line (or row group), never a 500, nothing imported."""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from feedback import importing
from feedback.importing.limits import ImportLimits
from feedback.models import Prompt

LIMITS = ImportLimits.from_settings()


def errors_of(data: bytes, fmt: str, limits: ImportLimits = LIMITS) -> list[str]:
    with pytest.raises(ValidationError) as info:
        importing.read_rows(io.BytesIO(data), fmt, limits=limits)
    return info.value.message_dict["file"]


def jsonl(*lines: str) -> bytes:
    return "\n".join(lines).encode() + b"\n"


GOOD = json.dumps({"id": "ok", "prompt": "Hi?"})


# --- JSONL -------------------------------------------------------------------------------------------------

def test_jsonl_deep_line_is_named():
    deep = '{"prompt": "x", "metadata": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"
    assert errors_of(jsonl(GOOD, deep), "jsonl") == ["line 2: field 'row' is JSON nested deeper than 32 levels."]


def test_jsonl_very_deep_line_is_refused_without_recursion_error():
    errors = errors_of(jsonl(GOOD, GOOD.replace("ok", "ok2"), "[" * 200_000 + "]" * 200_000), "jsonl")
    assert errors[0].startswith("line 3: field 'row'") and "deeper" in errors[0]


@pytest.mark.parametrize("line, words", [
    ('{"prompt": "x", "metadata": {"n": ' + "9" * 5000 + "}}", "out of range"),
    ('{"prompt": "x", "metadata": {"n": NaN}}', "out of range"),
    ('{"prompt": "x", "metadata": {"n": 1e999}}', "out of range"),
    ('{"prompt": "x"', "not valid JSON"),
])
def test_jsonl_bad_numbers_and_syntax_are_named(line, words):
    [error] = errors_of(jsonl(GOOD, line), "jsonl")
    assert error.startswith("line 2: field 'row'") and words in error


def test_jsonl_bad_encoding_names_the_line():
    data = jsonl(GOOD, GOOD.replace("ok", "ok2")) + b'{"prompt": "caf\xe9"}\n'
    [error] = errors_of(data, "jsonl")
    assert error.startswith("line 3: field 'row' is not valid UTF-8")


def test_jsonl_line_length_is_bounded_before_parsing():
    limits = replace(LIMITS, max_line_bytes=1000)
    [error] = errors_of(jsonl(GOOD, json.dumps({"prompt": "x" * 5000})), "jsonl", limits)
    assert error == "line 2: field 'row' is longer than 1000 bytes"


def test_jsonl_row_count_is_bounded():
    limits = replace(LIMITS, max_rows=3)
    lines = [json.dumps({"id": f"r{i}", "prompt": f"p{i}"}) for i in range(5)]
    assert errors_of(jsonl(*lines), "jsonl", limits) == ["line 4: field 'file' holds more than 3 rows"]


# --- CSV ---------------------------------------------------------------------------------------------------

def test_csv_field_size_is_bounded():
    limits = replace(LIMITS, max_csv_field_chars=1000)
    data = b"id,prompt\nq1,hello\nq2," + b"x" * 5000 + b"\n"
    [error] = errors_of(data, "csv", limits)
    assert error.startswith("line 3: field 'row' is not valid CSV") and "field larger than field limit" in error


def test_csv_bad_encoding_names_the_line():
    [error] = errors_of(b"id,prompt\nq1,hello\nq2,caf\xe9\n", "csv")
    assert error.startswith("line 3: field 'row' is not valid UTF-8")


def test_csv_row_count_is_bounded():
    limits = replace(LIMITS, max_rows=2)
    data = b"id,prompt\n" + b"".join(f"q{i},p{i}\n".encode() for i in range(4))
    assert errors_of(data, "csv", limits) == ["line 4: field 'file' holds more than 2 rows"]


def test_csv_deep_metadata_cell_names_the_line_and_field():
    deep = '"' + ('{""a"": ' * 40 + "1" + "}" * 40) + '"'
    data = f"id,prompt,metadata\nq1,hello,{{}}\nq2,hi,{deep}\n".encode()
    [error] = errors_of(data, "csv")
    assert error.startswith("line 3: field 'metadata' is not valid JSON") and "deeper" in error


def test_csv_nul_byte_is_a_field_error():
    [error] = errors_of(b"id,prompt\nq1,he\x00llo\n", "csv")
    assert error.startswith("line 2:") and "NUL" in error


# --- Parquet -----------------------------------------------------------------------------------------------

def parquet_bytes(table: pa.Table, **options) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


@pytest.fixture(scope="module")
def parquet_bomb() -> bytes:
    """A few hundred KB that hold 5M × 64-character strings: 300+ MB once decompressed."""
    prompts = pa.array(["What is the meaning of life, the universe and everything? " + "x" * 6] * 5_000_000)
    table = pa.table({"prompt": prompts})
    return parquet_bytes(table, compression="zstd", use_dictionary=False, row_group_size=1_000_000)


def test_parquet_bomb_is_refused_from_the_footer_alone(parquet_bomb, monkeypatch):
    assert len(parquet_bomb) < 2 * 1024 * 1024
    limits = replace(LIMITS, max_rows=10_000_000)

    def never(*args, **kwargs):
        raise AssertionError("a data page was read")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", never)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", never)
    started = time.monotonic()
    [error] = errors_of(parquet_bomb, "parquet", limits)
    assert time.monotonic() - started < 2
    assert "uncompressed" in error and f"the limit is {LIMITS.max_parquet_uncompressed_bytes} bytes" in error
    assert error.startswith("field 'file' declares ")


def test_parquet_row_count_is_refused_from_the_footer(parquet_bomb):
    [error] = errors_of(parquet_bomb, "parquet")
    assert error == f"field 'file' declares 5000000 rows; the limit is {LIMITS.max_rows}"


def test_parquet_row_groups_are_bounded():
    table = pa.table({"prompt": [f"p{i}" for i in range(10)]})
    data = parquet_bytes(table, row_group_size=2)
    [error] = errors_of(data, "parquet", replace(LIMITS, max_parquet_row_groups=3))
    assert error == "field 'file' declares 5 row groups; the limit is 3"


def test_parquet_dictionary_bomb_is_refused_before_decoding():
    """Dictionary pages are small however often a value repeats: the decoded size is bounded too."""
    table = pa.table({"prompt": pa.array(["y" * 10_000] * 50_000)})  # 500 MB decoded
    data = parquet_bytes(table, compression="zstd", use_dictionary=True)
    assert len(data) < 1024 * 1024
    [error] = errors_of(data, "parquet", replace(LIMITS, max_parquet_uncompressed_bytes=50 * 1024 * 1024))
    assert "row group 0" in error and "decoded" in error


def test_parquet_corrupt_data_page_names_the_row_group():
    table = pa.table({"id": [f"q{i}" for i in range(2000)], "prompt": [f"prompt number {i} " * 5 for i in range(2000)]})
    data = bytearray(parquet_bytes(table, compression="snappy", use_dictionary=False, row_group_size=1000))
    second_group = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(1).column(1)
    start = second_group.data_page_offset + 40
    data[start:start + 400] = b"\xff" * 400
    [error] = errors_of(bytes(data), "parquet")
    assert error.startswith("line 1001: field 'file' row group 1 (rows 1001–2000) is not readable"), error


def test_not_parquet_is_a_file_error():
    [error] = errors_of(b"PAR1 this is not parquet", "parquet")
    assert error.startswith("field 'file' is not a readable Parquet file")


# --- Through the API: a 400, nothing imported ---------------------------------------------------------------

@pytest.mark.parametrize("name, data", [
    ("deep.jsonl", jsonl(GOOD, "[" * 100_000 + "]" * 100_000)),
    ("bad.csv", b"id,prompt\nq1,ok\nq2,\xff\xfe\n"),
    ("bad.parquet", b"PAR1" + b"\x00" * 100 + b"PAR1"),
])
def test_api_import_refuses_with_400_and_imports_nothing(project, project_admin, name, data):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(project_admin)
    before = Prompt.objects.count()
    response = client.post(f"/api/v1/projects/{project.pk}/import/",
                           {"file": SimpleUploadedFile(name, data)}, format="multipart")
    assert response.status_code == 400, response.content
    assert "file" in response.json()
    assert Prompt.objects.count() == before


def test_api_import_refuses_the_parquet_bomb(project, project_admin, parquet_bomb, settings):
    settings.IMPORT_MAX_ROWS = 10_000_000
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(project_admin)
    response = client.post(f"/api/v1/projects/{project.slug}/import/",
                           {"file": SimpleUploadedFile("bomb.parquet", parquet_bomb)}, format="multipart")
    assert response.status_code == 400
    assert "uncompressed" in response.json()["file"][0]
    assert not Prompt.objects.filter(project=project).exists()
