"""Serializer number fields that take ASCII numbers only.

Python's int() and float() read any Unicode digit ('٣' is 3, '３' is 3), and float() reads 'nan' and
'1e999' (infinite): DRF's own fields pass all of these through. These refuse them with a 400 naming the field.
"""

from __future__ import annotations

import math
import re

from rest_framework import serializers

_ASCII_NUMBER = re.compile(r"\s*[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*", re.ASCII)
NOT_AN_ASCII_NUMBER = "A number written with ASCII digits is required."
NOT_FINITE = "A finite number is required."


def _refuse_non_ascii(field, data) -> None:
    if isinstance(data, str) and (len(data) > 64 or not _ASCII_NUMBER.fullmatch(data)):
        raise serializers.ValidationError(NOT_AN_ASCII_NUMBER, code="invalid")


class AsciiIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        _refuse_non_ascii(self, data)
        if isinstance(data, float) and not math.isfinite(data):
            raise serializers.ValidationError(NOT_FINITE, code="invalid")
        return super().to_internal_value(data)


class AsciiFloatField(serializers.FloatField):
    def to_internal_value(self, data):
        _refuse_non_ascii(self, data)
        try:
            value = super().to_internal_value(data)
        except OverflowError:  # float(10**400)
            raise serializers.ValidationError(NOT_FINITE, code="invalid") from None
        if not math.isfinite(value):
            raise serializers.ValidationError(NOT_FINITE, code="invalid")
        return value
