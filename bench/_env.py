"""What every bench script that loads models needs before its first project import: the project root and bench/
on `sys.path`, and the hub switched off (models come from the wheels via MODEL_DIR; nothing is downloaded).

    import _env  # noqa: F401  (first among the project imports)
    ROOT = _env.ROOT
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (str(ROOT), str(ROOT / "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizers' own threads would fight torch's
