"""Form fields of the pages' query strings and forms that accept ASCII numbers only.

Python's int() and float() read Arabic-Indic or full-width digits ("٣" is 3): a number typed into a
form or a link is refused unless it is plain ASCII, as the API refuses it.
"""

from __future__ import annotations

from django import forms

NOT_ASCII = "Enter a number in plain digits (0-9)."


class _AsciiOnly:
    def to_python(self, value):
        if isinstance(value, str) and not value.isascii():
            raise forms.ValidationError(NOT_ASCII, code="invalid")
        return super().to_python(value)


class AsciiIntegerField(_AsciiOnly, forms.IntegerField):
    pass


class AsciiFloatField(_AsciiOnly, forms.FloatField):
    pass
