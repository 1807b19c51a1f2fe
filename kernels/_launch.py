"""What every kernel launcher shares: compute dtype, dot precision, cached scalars and
the CUDA device context.

Below both kernel designs (the per-axis kernel of :mod:`fdseg_kernels._common` and the
two-pass kernels of :mod:`fdseg_kernels.band_fused`); imports torch only.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["GPU_FLOAT32_PRECISION", "compute_dtype", "dot_precision", "on_device_of"]

#: ``tl.dot`` input precision of float32 work on the GPU. ``"tf32x3"`` splits each float32
#: operand into a TF32 head and tail and sums three tensor-core products (head*head,
#: head*tail, tail*head): relative error ~1e-6, float32-like, at tensor-core speed. On an
#: H100 it timed like exact ``"ieee"`` FMA dots (these kernels are memory- and launch-bound);
#: it keeps compute headroom for wide bands, whose FLOPs grow with k (kernels/README.md).
GPU_FLOAT32_PRECISION = "tf32x3"


def dot_precision(compute: torch.dtype, interpret: bool) -> str:
    """``input_precision`` of the kernel's ``tl.dot`` for a compute dtype and mode.

    float64 and the interpreter (numpy, exact whatever it is told) use ``"ieee"``;
    float32 on the GPU uses :data:`GPU_FLOAT32_PRECISION`.
    """
    if interpret or compute == torch.float64:
        return "ieee"
    return GPU_FLOAT32_PRECISION


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@functools.lru_cache(maxsize=64)
def _scalar(value: float, dtype: torch.dtype, device: str) -> torch.Tensor:
    """A cached one-element tensor (the epilogue scale ``s``); never modified."""
    return torch.full((1,), value, dtype=dtype, device=device)


def on_device_of(a: torch.Tensor, fn, *args):
    """``fn(*args)`` with ``a``'s CUDA device current: Triton launches on the current
    device, which need not be the tensors' one."""
    if a.is_cuda:
        with torch.cuda.device(a.device):
            return fn(*args)
    return fn(*args)
