"""The code version written into every manifest and sidecar."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

from camstudy import __version__


@lru_cache(maxsize=1)
def code_version() -> str:
    """``"<package version>+g<commit>[.dirty]"`` in a git checkout, else the version."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" + (".dirty" if dirty else "")
