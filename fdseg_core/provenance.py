"""Which fdseg made a result: its version and, for a source checkout, its git commit."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["PROVENANCE_KEYS", "code_provenance"]

#: The keys of :func:`code_provenance`, as results record them.
PROVENANCE_KEYS = ("fdseg_version", "fdseg_commit", "fdseg_dirty")


@functools.cache
def code_provenance() -> dict[str, str | bool | None]:
    """fdseg's version and the git commit of its source tree.

    Returns:
        ``{"fdseg_version": "0.1.0", "fdseg_commit": "<40 hex digits>" or None,
        "fdseg_dirty": bool or None}``: the commit and whether tracked files differ
        from it when fdseg runs from a git checkout (an editable install, an experiment
        worktree), ``None`` for an installed wheel or when git is unavailable.
    """
    try:
        version: str | None = metadata.version("fdseg")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = None
    root = Path(__file__).resolve().parent.parent
    commit: str | None = None
    dirty: bool | None = None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if head.returncode == 0 and (root / "fdseg_core").is_dir():
            commit = head.stdout.strip() or None
            status = subprocess.run(
                [
                    "git",
                    "-C",
                    str(root),
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                    "--",
                    "fdseg_core",
                    "fdseg_backbones",
                    "kernels",
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"fdseg_version": version, "fdseg_commit": commit, "fdseg_dirty": dirty}
