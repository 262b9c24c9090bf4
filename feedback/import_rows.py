"""What an imported row is once validated (PromptRow, CompletionRow), its limits, and its content hashes.

Shared by the per-row reader (`feedback.importing`) and the column-wise one (`feedback.import_columns`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from json.encoder import encode_basestring  # what json.dumps(str, ensure_ascii=False) writes

MAX_PROMPT_CHARS = 100_000
MAX_COMPLETION_CHARS = 100_000
MAX_EXTERNAL_ID_CHARS = 200
MAX_MODEL_NAME_CHARS = 200


@dataclass(frozen=True)
class CompletionRow:
    text: str
    model: str

    @cached_property
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

    @cached_property
    def content_hash(self) -> str:
        if self.messages is None:
            return text_hash(self.text)
        return _sha256(self.messages)


def _sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def text_hash(text: str) -> str:
    """_sha256(text) without json.dumps' dispatch: the same bytes, hashed."""
    return hashlib.sha256(encode_basestring(text).encode()).hexdigest()


def completion_hash(text: str, model: str) -> str:
    """_sha256({"text": text, "model": model}) spelled out (sort_keys puts "model" first): the same bytes."""
    return hashlib.sha256(f'{{"model": {encode_basestring(model)}, "text": {encode_basestring(text)}}}'.encode()).hexdigest()
