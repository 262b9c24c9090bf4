"""The input boundary for JSON: a bounded parse that refuses what would exhaust the parser or the code
after it (very deep nesting, huge documents) with a clear message, used by the API's parser and by
every importer of JSON lines."""

from __future__ import annotations

import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 32  # a chat prompt with metadata needs about 4
JSON_TOO_DEEP = "JSON nested deeper than {limit} levels."
JSON_INVALID = "Malformed JSON: {error}"


class JSONTooDeep(ValueError):
    pass


def _depth_exceeds(value, limit: int) -> bool:
    """Iterative (no recursion of our own): True when containers nest deeper than `limit`."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def loads_bounded(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH):
    """json.loads, but ValueError (JSONTooDeep for nesting) instead of RecursionError or a deep structure."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONTooDeep(JSON_TOO_DEEP.format(limit=max_depth)) from None
    if _depth_exceeds(value, max_depth):
        raise JSONTooDeep(JSON_TOO_DEEP.format(limit=max_depth))
    return value


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with a depth bound; the body size is bounded before parsing by Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE (a 413)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        raw = stream.read() if stream is not None else b""
        try:
            return loads_bounded(raw.decode(encoding))
        except UnicodeDecodeError:
            raise ParseError(f"The body is not valid {encoding}.") from None
        except JSONTooDeep as exc:
            raise ParseError(str(exc)) from None
        except ValueError as exc:
            raise ParseError(JSON_INVALID.format(error=exc)) from None
