"""Preference rows → `datasets.Dataset` in TRL's preference format; prompt datasets for PPO.

The export (DESIGN.md, Contract) writes one JSON object per pair: `prompt`, `chosen`, `rejected` (each a
string or a list of chat messages `{"role", "content"}`), plus `margin`, `agreement`, `n_judgements`,
`prompt_id`, `chosen_model`, `rejected_model`, `snapshot`. TRL reads `prompt`/`chosen`/`rejected` (+ `margin`).

One rule decides how a pair is shown to a model, for training and scoring alike (`input_format`):
- the tokenizer has a chat template (SmolLM2) → conversational: a string prompt becomes a user turn, a string
  completion an assistant turn, and TRL applies the template;
- it has none (MiniLM) → plain text: chat messages are flattened to text, and the prompt ends with a separator
  (the tokenizer's `[SEP]`) because TRL joins `prompt + chosen` with nothing in between.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

Messages = list[dict[str, str]]
TextOrMessages = str | Messages

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
EXPORT_COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "margin",
    "agreement",
    "n_judgements",
    "confidence",
    "prompt_id",
    "chosen_model",
    "rejected_model",
    "snapshot",
)


@dataclass(frozen=True)
class InputFormat:
    """How (prompt, completion) pairs are presented to one tokenizer. Stored in a reward model's manifest."""

    conversational: bool
    separator: str = ""  # plain text only: put between prompt and completion

    def to_dict(self) -> dict[str, Any]:
        return {"conversational": self.conversational, "separator": self.separator}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InputFormat:
        return cls(conversational=bool(values["conversational"]), separator=str(values.get("separator", "")))


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def input_format_for(tokenizer) -> InputFormat:
    """Conversational when the tokenizer has a chat template; else plain text joined by its separator token."""
    if has_chat_template(tokenizer):
        return InputFormat(conversational=True)
    sep = getattr(tokenizer, "sep_token", None) or getattr(tokenizer, "eos_token", None)
    return InputFormat(conversational=False, separator=f" {sep} " if sep else "\n\n")


# --- one value: text or chat messages ------------------------------------------------------------------------


def is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _check_value(value: Any, what: str) -> TextOrMessages:
    if isinstance(value, str):
        return value
    if is_messages(value) and value:
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise ValueError(f"{what} must be a string or a non-empty list of {{'role', 'content'}} messages, got {value!r}")


def to_messages(value: TextOrMessages, role: str) -> Messages:
    """A string becomes one message with `role`; messages are returned as they are."""
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


def messages_to_text(value: TextOrMessages) -> str:
    """Flatten for a tokenizer without a chat template.

    A lone user (or assistant) message is just its content; longer conversations keep the speaker per line.
    """
    if isinstance(value, str):
        return value
    if len(value) == 1:
        return value[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in value)


def format_prompt(prompt: TextOrMessages, fmt: InputFormat) -> TextOrMessages:
    if fmt.conversational:
        return to_messages(prompt, "user")
    return messages_to_text(prompt) + fmt.separator


def format_completion(completion: TextOrMessages, fmt: InputFormat) -> TextOrMessages:
    if fmt.conversational:
        return to_messages(completion, "assistant")
    return messages_to_text(completion)


# --- preference rows → Dataset -------------------------------------------------------------------------------


def check_preference_row(row: dict[str, Any], where: str = "row") -> dict[str, Any]:
    """Validate one export row: the three TRL columns, margin/agreement numeric when present."""
    missing = [key for key in PREFERENCE_COLUMNS if key not in row]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}")
    checked = dict(row)
    for key in PREFERENCE_COLUMNS:
        checked[key] = _check_value(row[key], f"{where}: {key}")
    for key in ("margin", "agreement", "confidence"):
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{where}: {key} must be a number or null, got {value!r}")
    confidence = row.get("confidence")
    if confidence is not None and not 1.0 <= confidence <= 5.0:
        raise ValueError(f"{where}: confidence must be in [1, 5], got {confidence}")
    agreement = row.get("agreement")
    if agreement is not None and not 0.0 <= agreement <= 1.0:
        raise ValueError(f"{where}: agreement must be in [0, 1], got {agreement}")
    return checked


def confidence_weight(confidence: float | None) -> float:
    """The judges' mean confidence (1 = unsure … 5 = certain) as a weight in [0, 1]: (confidence − 1) / 4.
    Unknown (no judge rated it) weighs 1: the consensus alone decides the margin."""
    return 1.0 if confidence is None else min(max((float(confidence) - 1.0) / 4.0, 0.0), 1.0)


def pair_margin(row: dict[str, Any], scale: float = 1.0) -> float:
    """The reward gap a pair asks for in TRL's loss −logsigmoid(r_chosen − r_rejected − margin): the consensus
    strength (the export's `margin`, |weighted wins − weighted losses| / total weight, in [0, 1]) times the judges'
    confidence weight, times `scale`. A unanimous, certain pair asks for `scale`; a split or unsure one for ~0 (a
    plain Bradley-Terry pair). A missing margin counts as 0."""
    return scale * float(row.get("margin") or 0.0) * confidence_weight(row.get("confidence"))


def preference_dataset(
    rows: Iterable[dict[str, Any]],
    fmt: InputFormat,
    *,
    with_margin: bool = False,
    margin_scale: float = 1.0,
) -> Dataset:
    """Rows → Dataset with `prompt`, `chosen`, `rejected` (and `margin` when `with_margin`) in `fmt`.

    Every row is converted to the same shape (all messages, or all text), so Arrow gets one column type even
    when the export mixes strings and messages. The `margin` column is `pair_margin` (consensus × confidence ×
    `margin_scale`). TRL uses a `margin` column whenever present, so it is only added when asked for.
    """
    columns: dict[str, list] = {"prompt": [], "chosen": [], "rejected": []}
    if with_margin:
        columns["margin"] = []
    for index, row in enumerate(rows):
        row = check_preference_row(row, where=f"row {index}")
        columns["prompt"].append(format_prompt(row["prompt"], fmt))
        columns["chosen"].append(format_completion(row["chosen"], fmt))
        columns["rejected"].append(format_completion(row["rejected"], fmt))
        if with_margin:
            columns["margin"].append(pair_margin(row, margin_scale))
    return Dataset.from_dict(columns)


def preference_dataset_for(tokenizer, rows: Iterable[dict[str, Any]], *, with_margin: bool = False) -> Dataset:
    """`preference_dataset` in the format that suits `tokenizer` (for the reward trainer with the reward
    backbone's tokenizer, for the DPO trainer with the policy's)."""
    return preference_dataset(rows, input_format_for(tokenizer), with_margin=with_margin)


# --- files -------------------------------------------------------------------------------------------------


def read_preference_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read the platform's JSONL export; errors name the line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_number}: expected a JSON object")
            rows.append(check_preference_row(row, where=f"{path}:{line_number}"))
    return rows


def write_preference_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write rows in the export format (used by tests and benchmarks); return how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


# --- prompts for PPO ---------------------------------------------------------------------------------------


def prompt_dataset(
    prompts: Sequence[TextOrMessages], tokenizer, *, max_prompt_length: int | None = None
) -> Dataset:
    """Prompts → Dataset with `prompt` (as formatted), `input_ids` (ready for generation) and `prompt_index`.

    With a chat template each prompt becomes a user turn followed by the assistant header
    (`add_generation_prompt=True`); without one the flattened text is tokenized as is. Prompts longer than
    `max_prompt_length` tokens are dropped (never truncated: a cut prompt asks another question);
    `prompt_index` points back into `prompts` so callers can tell which were kept.
    """
    fmt = input_format_for(tokenizer)
    columns: dict[str, list] = {"prompt": [], "input_ids": [], "prompt_index": []}
    for index, prompt in enumerate(prompts):
        prompt = _check_value(prompt, f"prompt {index}")
        if fmt.conversational:
            formatted: TextOrMessages = to_messages(prompt, "user")
            input_ids = tokenizer.apply_chat_template(
                formatted, add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
        else:
            formatted = messages_to_text(prompt)
            input_ids = tokenizer(formatted)["input_ids"]
        if max_prompt_length is not None and len(input_ids) > max_prompt_length:
            continue
        columns["prompt"].append(formatted)
        columns["input_ids"].append(list(input_ids))
        columns["prompt_index"].append(index)
    return Dataset.from_dict(columns)
