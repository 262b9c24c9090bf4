"""training/pipeline must run without Django: importing every module of it loads no `django*` module."""

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
import training.pipeline as pipeline
modules = [info.name for info in pkgutil.walk_packages(pipeline.__path__, prefix="training.pipeline.")]
for name in modules:
    importlib.import_module(name)
django = sorted(m for m in sys.modules if m.split(".")[0].startswith("django"))
print(json.dumps({"modules": modules, "django": django}))
"""


def test_importing_every_pipeline_module_loads_no_django():
    env = {"PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert {"training.pipeline.models", "training.pipeline.data", "training.pipeline.reward.trainer",
            "training.pipeline.ppo.loop", "training.pipeline.rounds.config"} <= set(report["modules"])

    assert report["django"] == []
