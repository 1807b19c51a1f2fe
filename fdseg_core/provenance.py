"""Which fdseg made a result (its version and, for a source checkout, its git commit), and
on what machine (the CPU, its vector instructions and threads, the GPU, torch)."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["CPU_FEATURES", "PROVENANCE_KEYS", "code_provenance", "machine_provenance"]

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


def machine_provenance(device: Any = None) -> dict[str, Any]:
    """What computes on this machine, as far as it changes floating-point results.

    Training is deterministic on one kind of CPU with the same threads, and differs from
    the first step on another (its kernels round differently): two runs' machines say
    whether they could have been bit-identical.

    Args:
        device: The ``torch.device`` (or its name) the run uses; ``None``: the CPU.

    Returns:
        ``{"device": the device type ("cpu", "cuda", "mps"), "cpu": the CPU model or
        None, "cpu_capability": the widest vector instructions torch's CPU kernels use
        ("AVX512", "AVX2", "DEFAULT", ...), "cpu_features": which of the instruction sets
        that oneDNN's convolutions choose between the CPU has (from ``/proc/cpuinfo``;
        empty elsewhere), "cpu_threads": torch's intra-op threads, "cuda_device": the
        GPU's name, "cuda_version", "cudnn_version" (None off CUDA), "torch_version",
        "python_version"}``.
    """
    import torch  # lazy: the code provenance above is read without torch (stdlib only)

    device = torch.device("cpu" if device is None else device)
    cuda = cuda_version = cudnn_version = None
    if device.type == "cuda" and torch.cuda.is_available():
        cuda = torch.cuda.get_device_name(device)
        cuda_version = torch.version.cuda
        cudnn_version = torch.backends.cudnn.version()
    return {
        "device": device.type,
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_features": list(_cpu_features()),
        "cpu_threads": torch.get_num_threads(),
        "cuda_device": cuda,
        "cuda_version": cuda_version,
        "cudnn_version": cudnn_version,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


#: The x86 instruction sets among which oneDNN (torch's CPU convolutions) picks kernels.
CPU_FEATURES = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
    "amx_bf16",
)  # fmt: skip


def _cpuinfo_field(name: str) -> str | None:
    """The first value of a ``/proc/cpuinfo`` field (``None`` without that file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.cache
def _cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    return _cpuinfo_field("model name") or platform.processor() or None


@functools.cache
def _cpu_features() -> tuple[str, ...]:
    """Which of :data:`CPU_FEATURES` the CPU has, in that order."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return tuple(f for f in CPU_FEATURES if f in flags)
