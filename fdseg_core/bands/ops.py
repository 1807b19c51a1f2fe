"""The band operators as ``torch.library`` custom ops: ``fdseg::band_split`` and
``fdseg::band_fuse``.

Why custom ops: ``torch.compile`` sees each call as one opaque node (no graph break,
whatever backend runs inside), a fake implementation gives it the output shapes without
running anything, and the autograd formula is registered once for every backend.

Each op's vector-Jacobian product is the *other* op on the transposed operators
(``transposed`` flips): with ``A``, ``V`` the per-axis down- and up-sampling (``D``,
``U`` for the centred layout; the complex matrices of ``layout="reference"``),

    split(x)        = (A x, x - V A x)          split'(g_low, g_high) = fuse^T(g_low, g_high)
    fuse(low, high) = high - V (A high - low)   fuse'(g)              = split^T(g)

where ``^T`` swaps ``(A, V)`` for ``(V^T, A^T)``. For the centred layout ``D^T = c U``
(``c = prod k/n``), so the transposed ops are the plain ones with ``low`` scaled by
``c`` or ``1/c``; for the reference layout they use the transposed complex matrices
(the torch.fft backend swaps ``fftn`` and ``ifftn``). Transposing twice gives the
original, so backward passes are themselves differentiable.

The backend (``"auto"`` included) is resolved when the op runs, per call; validation
happens once, in :func:`fdseg_core.bands.band_split` / ``band_fuse``. ``kernel`` picks the
Triton kernels' design (:data:`~fdseg_core.choices.KERNELS`) when the Triton backend
serves the call, forward and backward alike; the other backends ignore it. These ops are
the only autograd path of the Triton kernels: :mod:`fdseg_kernels` holds forward
launchers only.
"""

from __future__ import annotations

import torch

from fdseg_core.bands import fft as _fft
from fdseg_core.bands import matmul as _matmul
from fdseg_core.bands.dispatch import resolve_backend
from fdseg_core.bands.operators import adjoint_scale, low_band_shape

__all__ = ["band_split_op", "band_fuse_op"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _fft_dtype(t: torch.Tensor) -> torch.Tensor:
    """torch.fft has no float16/bfloat16 kernels on most devices: compute those in float32."""
    return t.float() if t.dtype in _LOW_PRECISION else t


def _scale(dims, widths, shape) -> float:
    return adjoint_scale(tuple(shape[d] for d in dims), tuple(widths))


def _split_impl(x, dims, widths, layout, backend, transposed, kernel):
    chosen = resolve_backend(backend, layout, x.device)
    if layout == "reference":
        if chosen == "torch":
            low, high = _fft.split_reference(_fft_dtype(x), dims, widths, transposed=transposed)
            return low.to(x.dtype), high.to(x.dtype)
        return _matmul.split_reference(x, dims, widths, transposed=transposed)
    if chosen == "torch":
        low, high = _fft.split_centered(_fft_dtype(x), dims, widths)
        low, high = low.to(x.dtype), high.to(x.dtype)
    elif chosen == "matmul":
        low, high = _matmul.split(x, dims, widths)
    else:
        # lazy: the kernel modules import triton, an optional extra
        from fdseg_kernels.band_split import band_split_forward

        low, high = band_split_forward(x, dims, widths, impl=kernel)
    if transposed:  # split^T(x) = (D x / c, x - U D x)
        low = low / _scale(dims, widths, x.shape)
    return low, high


def _fuse_impl(low, high, dims, widths, layout, backend, transposed, kernel):
    chosen = resolve_backend(backend, layout, high.device)
    if layout == "reference":
        if chosen == "torch":
            out = _fft.fuse_reference(
                _fft_dtype(low), _fft_dtype(high), dims, widths, transposed=transposed
            )
            return out.to(high.dtype)
        return _matmul.fuse_reference(low, high, dims, widths, transposed=transposed)
    scale = _scale(dims, widths, high.shape) if transposed else 1.0  # fuse^T = fuse(c low, .)
    if chosen == "torch":
        out = _fft.fuse_centered(_fft_dtype(low) * scale, _fft_dtype(high), dims, widths)
        return out.to(high.dtype)
    if chosen == "matmul":
        return _matmul.fuse(low, high, dims, widths, low_scale=scale)
    # lazy: the kernel modules import triton, an optional extra
    from fdseg_kernels.band_fuse import band_fuse_forward

    return band_fuse_forward(low.contiguous(), high.contiguous(), dims, widths, scale, impl=kernel)


@torch.library.custom_op("fdseg::band_split", mutates_args=())
def band_split_op(
    x: torch.Tensor,
    dims: list[int],
    widths: list[int],
    layout: str,
    backend: str,
    transposed: bool,
    kernel: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` of ``x`` (arguments validated by the caller). See the module doc."""
    low, high = _split_impl(x, tuple(dims), tuple(widths), layout, backend, transposed, kernel)
    # contiguous, as the fake implementation promises (torch.fft's real parts are strided
    # views of complex tensors), and never a view of the input
    return _fresh(low, x), _fresh(high, x)


def _fresh(out: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
    out = out.contiguous()
    return out.clone() if any(out is t for t in inputs) else out


@band_split_op.register_fake
def _(x, dims, widths, layout, backend, transposed, kernel):
    return x.new_empty(low_band_shape(x.shape, dims, widths)), torch.empty_like(x)


@torch.library.custom_op("fdseg::band_fuse", mutates_args=())
def band_fuse_op(
    low: torch.Tensor,
    high: torch.Tensor,
    dims: list[int],
    widths: list[int],
    layout: str,
    backend: str,
    transposed: bool,
    kernel: str,
) -> torch.Tensor:
    """``high - V (A high - low)`` (arguments validated by the caller)."""
    out = _fuse_impl(low, high, tuple(dims), tuple(widths), layout, backend, transposed, kernel)
    return _fresh(out, low, high)


@band_fuse_op.register_fake
def _(low, high, dims, widths, layout, backend, transposed, kernel):
    return torch.empty_like(high)


def _split_setup(ctx, inputs, output):
    x, dims, widths, layout, backend, transposed, kernel = inputs
    ctx.args = (dims, widths, layout, backend, transposed, kernel)
    ctx.shape = tuple(x.shape)


def _split_backward(ctx, g_low, g_high):
    dims, widths, layout, backend, transposed, kernel = ctx.args
    if g_high is None:
        g_high = g_low.new_zeros(ctx.shape)
    if g_low is None:
        g_low = g_high.new_zeros(low_band_shape(ctx.shape, dims, widths))
    g = band_fuse_op(
        g_low.contiguous(),
        g_high.contiguous(),
        dims,
        widths,
        layout,
        backend,
        not transposed,
        kernel,
    )
    return g, None, None, None, None, None, None


def _fuse_setup(ctx, inputs, output):
    _, _, dims, widths, layout, backend, transposed, kernel = inputs
    ctx.args = (dims, widths, layout, backend, transposed, kernel)


def _fuse_backward(ctx, g):
    dims, widths, layout, backend, transposed, kernel = ctx.args
    g_low, g_high = band_split_op(
        g.contiguous(), dims, widths, layout, backend, not transposed, kernel
    )
    return g_low, g_high, None, None, None, None, None, None


band_split_op.register_autograd(_split_backward, setup_context=_split_setup)
band_fuse_op.register_autograd(_fuse_backward, setup_context=_fuse_setup)
