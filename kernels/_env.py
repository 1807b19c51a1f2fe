"""Whether the Triton kernels can run: Triton's presence, the interpreter switch, the device.

The bottom of :mod:`fdseg_kernels`: it imports neither torch nor Triton at module
level, so the package (which re-exports these functions) stays cheap to import and
works without the optional ``triton`` extra.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["interpreter_enabled", "triton_available", "triton_runs_on"]

_TRUE = frozenset({"1", "true", "on", "yes"})


def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # a broken install, or sys.modules["triton"] = None
        return False


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` is set to a true value (``1``/``true``/``on``/``yes``) now.

    Read at every call, never cached: Triton's own parsing of the variable is the same.
    """
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUE


def triton_runs_on(device: torch.device | str) -> bool:
    """Whether the kernels can run on ``device``.

    Args:
        device: The device of the tensors.

    Returns:
        ``True`` for a CUDA device when Triton is installed, and for any device
        when Triton is installed and ``TRITON_INTERPRET=1`` is set (Triton's
        interpreter runs the kernels with numpy on the CPU).
    """
    import torch  # lazy: `import fdseg_kernels` loads neither torch nor triton

    if not triton_available():
        return False
    if interpreter_enabled():
        return True
    return torch.device(device).type == "cuda"
