"""The lock (requirements.txt) pins every direct dependency that pyproject.toml declares, at a version inside
its declared range, so `pip install -c requirements.txt .` (production) and `pip install -r requirements.txt`
(development, CI) install the same runtime set."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_declared_dependency_is_pinned_inside_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    lock = _lock()
    problems = []
    for spec in map(Requirement, declared):
        pinned = lock.get(canonicalize_name(spec.name))
        if pinned is None or not spec.specifier.contains(pinned, prereleases=True):
            problems.append(f"{spec} (lock: {pinned})")
    assert not problems, f"requirements.txt does not satisfy pyproject.toml: {problems}"


def test_test_tools_are_not_runtime_dependencies():
    runtime = {canonicalize_name(Requirement(d).name)
               for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert not runtime & {"pytest", "pytest-django", "playwright", "schemathesis", "hypothesis", "factory-boy"}
