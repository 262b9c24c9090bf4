"""The input boundary for JSON: a bounded parse that refuses what would exhaust the parser or the code
after it (very deep nesting, huge documents) with a clear message, used by the API's parser and by
every importer of JSON lines."""

from __future__ import annotations

import json
import math

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 32  # a chat prompt with metadata needs about 4
JSON_TOO_DEEP = "JSON nested deeper than {limit} levels."
JSON_INVALID = "Malformed JSON: {error}"
MAX_JSON_INT_DIGITS = 20  # past any 64-bit integer: refused before int() or a database sees it
JSON_NUMBER_OUT_OF_RANGE = "JSON number {number} is out of range (integers up to {digits} digits, finite floats)."


class JSONTooDeep(ValueError):
    pass


class JSONNumberOutOfRange(ValueError):
    pass


def _refuse(literal: str):
    shown = literal if len(literal) <= 24 else literal[:20] + "…"
    return JSONNumberOutOfRange(JSON_NUMBER_OUT_OF_RANGE.format(number=shown, digits=MAX_JSON_INT_DIGITS))


def parse_bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise _refuse(literal)
    return int(literal)


def parse_bounded_float(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):  # 1e999: finite in the text, infinite once parsed
        raise _refuse(literal)
    return value


def refuse_constant(literal: str):
    raise _refuse(literal)  # NaN, Infinity, -Infinity are not JSON


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
    """json.loads, but ValueError (JSONTooDeep for nesting, JSONNumberOutOfRange for numbers no field can hold)
    instead of RecursionError, a deep structure, NaN/Infinity, or a 4,000-digit integer."""
    try:
        value = json.loads(text, parse_int=parse_bounded_int, parse_float=parse_bounded_float, parse_constant=refuse_constant)
    except RecursionError:
        raise JSONTooDeep(JSON_TOO_DEEP.format(limit=max_depth)) from None
    if _depth_exceeds(value, max_depth):
        raise JSONTooDeep(JSON_TOO_DEEP.format(limit=max_depth))
    return value


def _out_of_range(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return len(str(abs(value))) > MAX_JSON_INT_DIGITS
    return isinstance(value, float) and not math.isfinite(value)


def path_of_out_of_range_number(text: str | bytes) -> list | None:
    """Where the first number no field can hold sits (["items", 0, "confidence"]), or None if unknown."""
    try:
        value = json.loads(text)  # only after loads_bounded refused it: its depth is bounded by RecursionError
    except (ValueError, RecursionError):  # e.g. more digits than Python converts
        return None
    stack = [([], value)]
    while stack:
        path, item = stack.pop()
        if _out_of_range(item):
            return path
        if isinstance(item, dict):
            stack.extend((path + [key], child) for key, child in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((path + [i], child) for i, child in reversed(list(enumerate(item))))
    return None


def _number_error(text: str, exc: JSONNumberOutOfRange) -> Exception:
    """A 400 naming the field (the body's top-level key) when the number sits inside an object."""
    path = path_of_out_of_range_number(text)
    if not path or not isinstance(path[0], str):
        return ParseError(str(exc))
    where = path[0] + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:])
    return ValidationError({path[0]: [f"{where}: {exc}"]})


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with a depth bound; the body size is bounded before parsing by Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE (a 413)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode(encoding)
            return loads_bounded(text)
        except UnicodeDecodeError:
            raise ParseError(f"The body is not valid {encoding}.") from None
        except LookupError:
            raise ParseError(f"Unknown charset {encoding!r}.") from None
        except JSONNumberOutOfRange as exc:
            raise _number_error(text, exc) from None
        except JSONTooDeep as exc:
            raise ParseError(str(exc)) from None
        except ValueError as exc:
            raise ParseError(JSON_INVALID.format(error=exc)) from None


NOT_FINITE = "must be a finite number (not inf or nan)."


def validate_finite(value) -> None:
    """A model field's validator: NaN passes every Min/MaxValueValidator (each comparison is False), so a float
    setting also states that it is finite. Django's ValidationError, for model.full_clean and the forms."""
    from django.core.exceptions import ValidationError as ModelValidationError

    if isinstance(value, float) and not math.isfinite(value):
        raise ModelValidationError(NOT_FINITE, code="not_finite")


def ascii_int(text: str) -> int:
    """A command-line integer written in ASCII digits (argparse `type=`): `int()` alone reads "٣٠٠" as 300."""
    if not (text.isascii() and text.lstrip("+-").isdigit()) or len(text.lstrip("+-")) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"{text!r} is not a whole number written in ASCII digits")
    return int(text)


def ascii_float(text: str) -> float:
    """A finite command-line number written in ASCII (argparse `type=`): refuses "inf", "nan", "1e400" and "٠٫٥"."""
    if not text.isascii():
        raise ValueError(f"{text!r} is not a number written in ASCII digits")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value
