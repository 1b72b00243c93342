"""Python processes run from this checkout (a script given as ``-c``): the tests' other apps,
admins and writers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def checkout_python(script: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """``python -c script *args`` with this checkout importable, its output piped as text;
    ``popen`` adds or overrides ``subprocess.Popen`` arguments (``stdin``, ``stderr``, ...)."""
    options: dict[str, Any] = {
        "cwd": REPO,
        "env": {**os.environ, "PYTHONPATH": str(REPO)},
        "stdout": subprocess.PIPE,
        "text": True,
        **popen,
    }
    return subprocess.Popen([sys.executable, "-c", script, *args], **options)
