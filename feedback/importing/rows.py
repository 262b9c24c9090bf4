"""What an imported row is once validated (PromptRow, CompletionRow), its limits, and its content hashes.

Shared by the per-row reader (`importing.readers`) and the column-wise one (`importing.columns`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # what json.dumps(str, ensure_ascii=False) writes

MAX_PROMPT_CHARS = 100_000
MAX_COMPLETION_CHARS = 100_000
MAX_EXTERNAL_ID_CHARS = 200
MAX_MODEL_NAME_CHARS = 200


class cached_hash:
    """functools.cached_property without its per-instance lock (Python 3.11 takes one on every first access):
    computed once, then stored in the instance's __dict__, where later reads find it directly."""

    def __init__(self, compute):
        self.compute, self.name = compute, compute.__name__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


@dataclass(frozen=True)
class CompletionRow:
    text: str
    model: str

    @cached_hash
    def content_hash(self) -> str:
        return completion_hash(self.text, self.model)


@dataclass(frozen=True)
class PromptRow:
    line: int
    external_id: str
    text: str
    messages: list | None
    metadata: dict = field(default_factory=dict)
    completions: tuple[CompletionRow, ...] = ()

    @cached_hash
    def content_hash(self) -> str:
        if self.messages is None:
            return text_hash(self.text)
        return _sha256(self.messages)


def _sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _json_string(text: str) -> bytes:
    """json.dumps(text, ensure_ascii=False) as UTF-8. JSON escapes only '"', '\\' and characters below U+0020
    (never printable), so the usual text is just quoted: three C-level scans instead of a rebuilt string."""
    if '"' in text or "\\" in text or not text.isprintable():
        return encode_basestring(text).encode()
    return b'"' + text.encode() + b'"'


def text_hash(text: str) -> str:
    """_sha256(text) without json.dumps' dispatch: the same bytes, hashed."""
    return hashlib.sha256(_json_string(text)).hexdigest()


def completion_hash(text: str, model: str) -> str:
    """_sha256({"text": text, "model": model}) spelled out (sort_keys puts "model" first): the same bytes."""
    return hashlib.sha256(b'{"model": ' + _json_string(model) + b', "text": ' + _json_string(text) + b"}").hexdigest()


ROW_KEYS = frozenset({"id", "prompt", "completions", "metadata"})
COMPLETION_KEYS = frozenset({"text", "model"})


def _plain_text(value, limit: int) -> bool:
    return type(value) is str and 0 < len(value) <= limit and "\x00" not in value and not value.isspace()


def _plain_completions(items) -> tuple[CompletionRow, ...] | None:
    completions = []
    for item in items:
        if type(item) is str:
            text, model = item, ""
        elif type(item) is dict and item.keys() <= COMPLETION_KEYS:
            text, model = item.get("text"), item.get("model") or ""
            if type(model) is not str or len(model) > MAX_MODEL_NAME_CHARS or "\x00" in model:
                return None
        else:
            return None
        if not _plain_text(text, MAX_COMPLETION_CHARS):
            return None
        completions.append(CompletionRow(text=text, model=model))
    if len({(c.text, c.model) for c in completions}) != len(completions):
        return None
    return tuple(completions)


def plain_json_row(raw, line: int) -> PromptRow | None:
    """The PromptRow `readers.clean_row` would build for a usual JSONL row (text prompt, string id, object or
    no metadata, 0 or 2–4 completions), with fewer checks; None for anything else, which clean_row then
    decides and words. Never returns a row clean_row would refuse."""
    if type(raw) is not dict or not raw.keys() <= ROW_KEYS:
        return None
    prompt, external_id, metadata, items = raw.get("prompt"), raw.get("id"), raw.get("metadata"), raw.get("completions")
    if not _plain_text(prompt, MAX_PROMPT_CHARS):
        return None
    if external_id is None:
        external_id = ""
    if type(external_id) is not str or len(external_id) > MAX_EXTERNAL_ID_CHARS or "\x00" in external_id:
        return None
    if metadata is None:
        metadata = {}
    if items is None:
        items = []
    if type(metadata) is not dict or type(items) is not list or len(items) not in (0, 2, 3, 4):
        return None
    completions = _plain_completions(items)
    if completions is None:
        return None
    return PromptRow(line=line, external_id=external_id.strip(), text=prompt, messages=None, metadata=metadata,
                     completions=completions)
