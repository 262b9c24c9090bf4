"""The dataset card: its load command loads what was written, and names the splits that have rows."""

import pytest
from django.core.management import call_command

from feedback import exports, services


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_card_load_command_works_with_an_empty_test_split(judged, tmp_path, monkeypatch, fmt):
    """Every format writes a file per split (an empty test split too), and the command in the card's code
    block, run as it is from the export directory, loads what was written."""
    import re

    out = tmp_path / fmt
    call_command("export_preferences", "--project", judged.slug, "--out", str(out), "--format", fmt,
                 "--test-fraction", "0", verbosity=0)
    ext = "parquet" if fmt == "parquet" else "jsonl"
    assert (out / f"train.{ext}").exists() and (out / f"test.{ext}").exists()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        empty = pq.read_table(out / "test.parquet")
        assert empty.num_rows == 0 and empty.schema == pq.read_table(out / "train.parquet").schema
    card = (out / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert "data_files" in code and '"test"' not in code
    monkeypatch.chdir(out)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102  (the card's own text)
    assert set(namespace["ds"]) == {"train"} and namespace["ds"]["train"].num_rows == 5
    assert {"prompt", "chosen", "rejected"} <= set(namespace["ds"]["train"].column_names)
    if fmt == "hf":
        assert namespace["ds_saved"]["train"].num_rows == 5


def test_card_names_both_splits_when_both_have_rows(judged, tmp_path):
    snapshot, stats = services.export_preferences(project=judged, out_dir=tmp_path, fmt="parquet",
                                                  filters=exports.ExportFilters(test_fraction=0.5))
    code = (tmp_path / "README.md").read_text().split("```python\n")[1].split("```")[0]
    for split in ("train", "test"):
        assert (f'"{split}": "{split}.parquet"' in code) == bool(stats.pairs[split])
