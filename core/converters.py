"""URL path converters: ids in URLs are ASCII only and short enough for any database's integers.

`<id:…>` takes 1–18 ASCII digits (every such number fits a signed 64-bit integer, so a 30-digit id is a
404, never an OverflowError); `<ref:…>` takes a project's numeric id under the same rule, or an ASCII slug.
Unicode digits ('٣', '３') match neither: `\\d` is never used, and `str.isdigit` alone is never trusted.
"""

from __future__ import annotations

import re

from django.urls import register_converter

MAX_ID_DIGITS = 18  # 10**18 - 1 < 2**63 - 1
MAX_SLUG_CHARS = 64  # Project.slug's max_length
ID_PATTERN = rf"[0-9]{{1,{MAX_ID_DIGITS}}}"
SLUG_PATTERN = rf"[-a-zA-Z0-9_]{{1,{MAX_SLUG_CHARS}}}"
_ID_RE = re.compile(ID_PATTERN, re.ASCII)
_REF_RE = re.compile(SLUG_PATTERN, re.ASCII)


def is_ascii_id(value: str) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def is_project_ref(value: str) -> bool:
    """An ASCII id of at most MAX_ID_DIGITS digits, or an ASCII slug that is not an over-long number."""
    if not isinstance(value, str) or _REF_RE.fullmatch(value) is None:
        return False
    return not value.isdigit() or len(value) <= MAX_ID_DIGITS


class IdConverter:
    regex = ID_PATTERN

    def to_python(self, value: str) -> int:
        if not is_ascii_id(value):
            raise ValueError(value)  # Django treats this as "no match": a 404
        return int(value)

    def to_url(self, value) -> str:
        return str(int(value))


class ProjectRefConverter:
    regex = SLUG_PATTERN

    def to_python(self, value: str) -> str:
        if not is_project_ref(value):
            raise ValueError(value)
        return value

    def to_url(self, value) -> str:
        return str(value)


register_converter(IdConverter, "id")
register_converter(ProjectRefConverter, "ref")
