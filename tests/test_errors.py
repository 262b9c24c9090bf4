"""Refusals are told apart by class or code, never by comparing their sentences."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("config", "core", "feedback", "training", "ops")
COMPARES_MESSAGE = re.compile(r"\.message\s*(==|!=|\bin\b|\bnot in\b)|(==|!=)\s*\w+\.message\b")


def test_no_code_compares_an_error_message():
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for app in APPS for path in (ROOT / app).rglob("*.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1) if COMPARES_MESSAGE.search(line)]
    assert offenders == []


def test_every_coded_refusal_answers_with_its_code():
    from feedback import errors

    classes = [value for value in vars(errors).values()
               if isinstance(value, type) and issubclass(value, errors.ApplicationError) and value.__module__ == errors.__name__]
    assert len(classes) >= 5
    assert len({cls.code for cls in classes}) == len(classes)  # one code per refusal
    for cls in classes:
        assert cls().message == cls.default_message and cls.code not in ("invalid", "conflict")
