"""Export rows → TRL preference datasets; JSONL files; PPO prompt datasets."""

import json

import pytest

from training.pipeline.data import (
    InputFormat,
    input_format_for,
    messages_to_text,
    preference_dataset,
    preference_dataset_for,
    prompt_dataset,
    read_preference_jsonl,
    write_preference_jsonl,
)

pytestmark = pytest.mark.ml

TEXT_ROW = {"prompt": "What is 2+2?", "chosen": "4.", "rejected": "5.", "margin": 0.5, "agreement": 1.0}
CHAT_ROW = {
    "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Peru?"}],
    "chosen": [{"role": "assistant", "content": "Lima."}],
    "rejected": "No idea.",
    "margin": None,
    "agreement": 0.67,
}


def test_input_format_follows_the_tokenizer(smollm2_tokenizer, minilm_tokenizer):
    assert input_format_for(smollm2_tokenizer) == InputFormat(conversational=True)
    assert input_format_for(minilm_tokenizer) == InputFormat(conversational=False, separator=" [SEP] ")


def test_chat_template_tokenizer_gets_conversational_columns(smollm2_tokenizer):
    dataset = preference_dataset_for(smollm2_tokenizer, [TEXT_ROW, CHAT_ROW])
    assert dataset.column_names == ["prompt", "chosen", "rejected"]
    assert dataset[0]["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert dataset[0]["chosen"] == [{"role": "assistant", "content": "4."}]
    assert dataset[1]["prompt"] == CHAT_ROW["prompt"]
    assert dataset[1]["rejected"] == [{"role": "assistant", "content": "No idea."}]


def test_minilm_gets_plain_text_joined_by_sep(minilm_tokenizer):
    dataset = preference_dataset_for(minilm_tokenizer, [TEXT_ROW, CHAT_ROW])
    assert dataset[0] == {"prompt": "What is 2+2? [SEP] ", "chosen": "4.", "rejected": "5."}
    # A multi-turn prompt keeps its speakers; a single assistant message is just its text.
    assert dataset[1]["prompt"] == "system: Be brief.\nuser: Capital of Peru? [SEP] "
    assert dataset[1]["chosen"] == "Lima."
    tokens = minilm_tokenizer.convert_ids_to_tokens(minilm_tokenizer(dataset[0]["prompt"] + "4.")["input_ids"])
    assert tokens == ["[CLS]", "what", "is", "2", "+", "2", "?", "[SEP]", "4", ".", "[SEP]"]


def test_margin_column_only_when_asked_and_missing_margin_is_zero():
    fmt = InputFormat(conversational=False, separator=" | ")
    assert "margin" not in preference_dataset([TEXT_ROW], fmt).column_names
    dataset = preference_dataset([TEXT_ROW, CHAT_ROW], fmt, with_margin=True)
    assert dataset["margin"] == [0.5, 0.0]


def test_the_margin_is_consensus_times_confidence():
    fmt = InputFormat(conversational=False, separator=" | ")
    rows = [dict(TEXT_ROW, margin=1.0, confidence=c) for c in (5, 3, 1, None)]
    assert preference_dataset(rows, fmt, with_margin=True)["margin"] == [1.0, 0.5, 0.0, 1.0]
    assert preference_dataset(rows[:2], fmt, with_margin=True, margin_scale=2.0)["margin"] == [2.0, 1.0]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "p", "chosen": "c"}, "missing column"),
        ({"prompt": "p", "chosen": 3, "rejected": "r"}, "chosen must be a string"),
        ({"prompt": [], "chosen": "c", "rejected": "r"}, "prompt must be a string"),
        ({"prompt": "p", "chosen": "c", "rejected": "r", "agreement": 1.5}, "agreement must be in"),
        ({"prompt": "p", "chosen": "c", "rejected": "r", "margin": "big"}, "margin must be a number"),
        ({"prompt": "p", "chosen": "c", "rejected": "r", "confidence": 9}, "confidence must be in"),
    ],
)
def test_bad_rows_are_refused_by_name(row, message):
    with pytest.raises(ValueError, match=message):
        preference_dataset([row], InputFormat(conversational=True))


def test_messages_to_text():
    assert messages_to_text("plain") == "plain"
    assert messages_to_text([{"role": "user", "content": "hi"}]) == "hi"


def test_jsonl_round_trip_and_errors_name_the_line(tmp_path, preference_rows):
    path = tmp_path / "prefs.jsonl"
    assert write_preference_jsonl(preference_rows[:5], path) == 5
    assert read_preference_jsonl(path) == preference_rows[:5]
    with open(path, "a") as fh:
        fh.write(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(ValueError, match=r"prefs.jsonl:6: missing column\(s\) rejected"):
        read_preference_jsonl(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match="prefs.jsonl:1: not valid JSON"):
        read_preference_jsonl(path)


def test_prompt_dataset_with_chat_template_ends_at_the_assistant_header(smollm2_tokenizer):
    prompts = ["Name a colour.", [{"role": "user", "content": "Name a fruit."}], "word " * 300]
    dataset = prompt_dataset(prompts, smollm2_tokenizer, max_prompt_length=64)
    assert dataset["prompt_index"] == [0, 1]  # the long prompt is dropped, not cut
    assert dataset[0]["prompt"] == [{"role": "user", "content": "Name a colour."}]
    text = smollm2_tokenizer.decode(dataset[1]["input_ids"])
    assert text.endswith("<|im_start|>assistant\n") and "Name a fruit." in text


def test_prompt_dataset_without_chat_template_is_plain_text(minilm_tokenizer):
    dataset = prompt_dataset([[{"role": "user", "content": "Hi there"}]], minilm_tokenizer)
    assert dataset[0]["prompt"] == "Hi there"
    assert minilm_tokenizer.decode(dataset[0]["input_ids"]) == "[CLS] hi there [SEP]"
