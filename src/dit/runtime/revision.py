"""The git revision of the installed source tree, recorded in run folders, checkpoints and protocol cards."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_revision() -> str:
    """The git commit of the installed source tree (``unknown`` outside a checkout), ``-dirty`` if edited."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except Exception:
        return "unknown"
