"""Which backend serves a call: the layout and backend names, Triton's status on a
device, and ``backend="auto"``, decided per call.

Below the custom ops (:mod:`fdseg_core.bands.ops`, which resolve the backend when they
run) and the public API (:mod:`fdseg_core.bands.api`, which checks the names early):
both use :func:`check_names`, so the messages are written once. Above
:mod:`fdseg_kernels`, whose package imports neither Triton nor the kernel modules.
"""

from __future__ import annotations

import torch

import fdseg_kernels
from fdseg_core.choices import BACKENDS, DEFAULT_KERNEL, KERNELS, LAYOUTS
from fdseg_core.errors import InputError

__all__ = ["available_backends", "check_names", "resolve_backend"]


def _triton_status(device: torch.device) -> str | None:
    """``None`` when the Triton kernels can run on ``device``, else the reason they cannot."""
    if not fdseg_kernels.triton_available():
        return "the 'triton' package is not installed (pip install 'fdseg[triton]')"
    if not fdseg_kernels.triton_runs_on(device):
        return (
            f"Triton kernels need a CUDA tensor, got a tensor on '{device}' "
            "(set TRITON_INTERPRET=1 to run them on the CPU through Triton's interpreter)"
        )
    return None


def available_backends(device: torch.device | str | None = None) -> list[str]:
    """Backends that can run on this machine.

    Args:
        device: Restrict to backends that run on this device. ``None`` means any
            device of this machine (CUDA when present).

    Returns:
        Backend names usable as ``backend=`` (``"auto"`` is always accepted too).
    """
    names = [b for b in BACKENDS if b != "triton"]  # these run on every device
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if _triton_status(torch.device(device)) is None:
        names.append("triton")
    return names


def check_names(layout: object, backend: object, kernel: object = DEFAULT_KERNEL) -> None:
    """Layout, backend and kernel-design names, and their combination; whether the
    backend can run here is decided per call, where the op runs (:func:`resolve_backend`).

    Raises:
        ValueError: Unknown layout, backend or kernel design, ``backend="triton"`` with
            ``layout="reference"``, or a kernel design other than the default with a
            backend that has no kernels (``"torch"``, ``"matmul"``).
    """
    if kernel not in KERNELS:
        raise InputError(f"unknown kernel design {kernel!r}; expected one of {list(KERNELS)}")
    if kernel != DEFAULT_KERNEL and backend in ("torch", "matmul"):
        raise InputError(
            f"kernel={kernel!r} picks a design of the Triton kernels, but backend={backend!r} "
            "runs none; use backend='triton' or 'auto'"
        )
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
    if backend != "auto" and backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; expected 'auto' or one of {list(BACKENDS)}")
    if layout == "reference" and backend == "triton":
        raise InputError(
            "backend 'triton' implements layout='centered' only; "
            "use backend='matmul', 'torch' or 'auto' for layout='reference'"
        )


def resolve_backend(backend: str, layout: str, device: torch.device) -> str:
    """The concrete backend a call with these arguments runs on (decided per call).

    ``"auto"`` picks the Triton kernels for CUDA tensors when Triton imports,
    else the matmul backend; for ``layout="reference"`` (which the Triton kernels do
    not implement) it picks the matmul backend on every device.

    Args:
        backend: ``"auto"`` or one of :data:`~fdseg_core.choices.BACKENDS`.
        layout: One of :data:`~fdseg_core.choices.LAYOUTS`.
        device: Device of the tensors.

    Returns:
        The backend name.

    Raises:
        ValueError: Unknown names, or a backend that cannot serve this call.
    """
    check_names(layout, backend)
    if layout == "reference":
        return "matmul" if backend == "auto" else backend
    if backend == "auto":
        return "triton" if device.type == "cuda" and _triton_status(device) is None else "matmul"
    if backend == "triton":
        reason = _triton_status(device)
        if reason is not None:
            raise InputError(f"backend 'triton' is unavailable: {reason}")
    return backend
