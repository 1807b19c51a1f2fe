"""fdseg's cache folder: the built-in phantom, and the results of dataset checks."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """fdseg's cache folder.

    ``$FDSEG_CACHE``, else ``$XDG_CACHE_HOME/fdseg``, else ``~/.cache/fdseg``.
    """
    if os.environ.get("FDSEG_CACHE"):
        return Path(os.environ["FDSEG_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fdseg"
