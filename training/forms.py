"""The settings form of a run, generated from its kind's config dataclass (run_kinds.RUN_KINDS[kind].config_class).

One input per field, with the field's `help` as its help text, typed by the field's declaration: a bool is a
checkbox, an int or a float a number, a str a text box, a dict or a list a JSON text area; a None-able field may
be left blank (None). Values are parsed with `pipeline.fields.parse_field_value`, so "3e-4" is the float 3e-4,
and a setting the run's own checks refuse (a ValueError or ValidationError naming it) is that field's error. A
number's stated range (its field's `range`) is the input's min and max and is named in its help; "inf", "nan" and
non-ASCII digits ("٣") are refused by the same parse as the API's and the commands'.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing

from django import forms
from django.core.exceptions import ValidationError

from core.parsing import loads_bounded
from training.pipeline.fields import parse_field_value
from training.run_kinds import RUN_KINDS

MARKER = "settings_form"  # present when the full form was submitted (else: the kind's defaults)


def _options(cls: type, name: str) -> tuple[list[type], bool]:
    declared = typing.get_type_hints(cls)[name]
    options = typing.get_args(declared) if isinstance(declared, types.UnionType) else (declared,)
    return [k for k in options if k is not type(None)], type(None) in options


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _plain(number) -> str:
    """A bound as the browser's min/max attribute reads it (no exponent)."""
    return str(number) if isinstance(number, int) else format(number, "f").rstrip("0").rstrip(".") or "0"


def _form_field(cls: type, field: dataclasses.Field) -> forms.Field:
    kinds, nullable = _options(cls, field.name)
    help_text = field.metadata.get("help", "")
    default = _default(field)
    if kinds == [bool]:
        return forms.BooleanField(required=False, initial=default, help_text=help_text)
    if kinds and kinds[0] in (dict, list):
        return forms.CharField(required=False, initial=json.dumps(default), help_text=help_text,
                               widget=forms.Textarea(attrs={"rows": 2}))
    if kinds and kinds[0] in (int, float):
        attrs = {"step": "1" if kinds[0] is int else "any"}
        bounds = field.metadata.get("range")  # the setting's stated range (pipeline.fields.Range)

        if bounds is not None:
            attrs.update(min=_plain(bounds.lo), max=_plain(bounds.hi))
            help_text = f"{help_text} Range: {bounds.interval()}.".strip()
        widget = forms.NumberInput(attrs=attrs)
    else:
        widget = forms.TextInput()
    return forms.CharField(required=not nullable, strip=True, help_text=help_text, widget=widget,
                           initial="" if default is None else default)


class RunSettingsForm(forms.Form):
    """The settings of one kind of run; `config()` is the dict for `services.start_training`."""

    def __init__(self, *args, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.config_class = RUN_KINDS[kind].config_class
        self.settings_fields = dataclasses.fields(self.config_class)
        for field in self.settings_fields:
            self.fields[field.name] = _form_field(self.config_class, field)

    def _parse(self, name: str, value):
        kinds, _ = _options(self.config_class, name)
        if kinds and kinds[0] in (dict, list) and isinstance(value, str):
            value = value.strip() or ("{}" if kinds[0] is dict else "[]")
            try:  # bounded as the API's bodies are: no NaN, Infinity, 5,000-digit integer or deep nesting
                value = loads_bounded(value)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"not valid JSON: {exc.msg}") from None
            except ValueError as exc:
                raise ValidationError(f"not valid JSON: {exc}") from None
        try:
            return parse_field_value(self.config_class, name, value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def clean(self):
        cleaned = super().clean()
        for field in self.settings_fields:
            if field.name in cleaned and field.name not in self.errors:
                try:
                    cleaned[field.name] = self._parse(field.name, cleaned[field.name])
                except ValidationError as exc:
                    self.add_error(field.name, exc)
        return cleaned

    def config(self) -> dict:
        return {field.name: self.cleaned_data[field.name] for field in self.settings_fields}

    def add_service_error(self, exc: Exception, tidy=str) -> None:
        """Put an error of the run's own checks next to the field it names (else above the form); `tidy` rewrites
        each message for the page (e.g. server paths made relative)."""
        if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
            for key, errors in exc.message_dict.items():
                for message in errors:
                    self._add_named(tidy(message), key)
            return
        messages = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
        for message in messages:
            self._add_named(tidy(message))

    def _add_named(self, message: str, key: str | None = None) -> None:
        name = key if key in self.fields else self._field_named_in(message)
        if name is None and key and key.split(".")[0] in self.fields:
            name = key.split(".")[0]
        self.add_error(name, message)

    def _field_named_in(self, message: str) -> str | None:
        qualified = re.search(rf"\b{re.escape(self.config_class.__name__)}\.(\w+)", message)
        if qualified and qualified.group(1) in self.fields:
            return qualified.group(1)
        for name in sorted(self.fields, key=len, reverse=True):
            if re.match(rf"^{re.escape(name)}\b", message) or re.search(rf"\b{re.escape(name)}\b", message[:80]):
                return name
        return None
