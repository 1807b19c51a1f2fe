"""The two-pass band operators: both band axes contracted in one kernel each.

The per-axis design (:mod:`fdseg_kernels._common`) runs four kernels for two band axes
and moves 3.42 X bytes (``X`` = the input's bytes): the two intermediates of 10 % of
the volume are written and read back. When the two band dims are adjacent in memory
(``(N, C, X, Y, Z)`` with dims ``(2, 3)``: the paper's in-plane axes) both contractions
fit in one kernel each, on the ``(pre, n1, n2, post)`` view:

* :func:`_band_down2_kernel`: ``small[p, i, j, q] = sum_a D1[i, a] sum_b D2[j, b]
  a[p, a, b, q] - s * e[p, i, j, q]``. A program owns a ``(p, q)`` tile, reads its
  ``(n1, n2, BLOCK_Q)`` slab of ``a`` once (row by row, ``tl.dot`` with ``D2`` over
  the row, a rank-1 update with ``D1``'s column into a ``(k1, k2, BLOCK_Q)``
  accumulator) and writes the 1 % ``small``.
* :func:`_band_up2_kernel`: ``out[p, a, b, q] = e[p, a, b, q] - sum_i U1[a, i]
  sum_j U2[b, j] small[p, i, j, q]``. A program owns an ``(a, b, q)`` tile of one
  ``p``, re-reads the small ``small`` slab and reads and writes the tile once.

Traffic: ``X`` read, ``0.01 X`` written, ``0.01 X`` read, ``X`` read, ``X`` written:
**3.02 X**, against 3.42 X, in 2 launches instead of 4 (``kernels/README.md``). Band
dims that are not two adjacent ones, and trailing extents below 16 (2D images, where
``post = 1``), keep the per-axis kernels.

Same numerics as the per-axis kernels: matrices in the compute dtype (float32, or
float64 for float64), loads converted in registers, ``tl.dot`` with the precision of
:func:`fdseg_kernels._launch.dot_precision`, outputs rounded once. The per-axis module
chooses between the two designs (``_common.project``) and so imports this one.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from fdseg_core.bands.operators import downsample_matrix, low_band_shape, upsample_matrix
from fdseg_kernels._env import interpreter_enabled
from fdseg_kernels._launch import _scalar, compute_dtype, dot_precision, on_device_of

__all__ = ["fused_applicable", "fused_band_project", "MIN_POST"]

#: Trailing extent below which the fused path is not used (tiles of ``tl.dot`` are >= 16).
MIN_POST = 16


@triton.jit
def _band_down2_kernel(
    a_ptr,  # pointer: input, contiguous (n_pre, n1, n2, n_post)
    d1_ptr,  # pointer: D1, (k1, n1) row-major, compute dtype
    d2_ptr,  # pointer: D2, (k2, n2) row-major, compute dtype
    e_ptr,  # pointer: epilogue operand, contiguous (n_pre, k1, k2, n_post); unused unless MINUS
    out_ptr,  # pointer: small, contiguous (n_pre, k1, k2, n_post), compute dtype
    s_ptr,  # pointer: one-element scale s of the epilogue, compute dtype
    n1,  # size: first band axis
    n2,  # size: second band axis
    k1,  # size: kept width on the first axis
    k2,  # size: kept width on the second axis
    n_post,  # size: trailing extent
    MINUS: tl.constexpr,  # subtract s * e from the result
    PRECISION: tl.constexpr,  # input_precision of tl.dot
    K1P: tl.constexpr,  # k1 padded to a power of two >= 16
    K2P: tl.constexpr,  # k2 padded to a power of two >= 16
    BLOCK_B: tl.constexpr,  # contraction step over n2
    BLOCK_Q: tl.constexpr,  # trailing elements per program
):
    pid = tl.program_id(0)
    num_q = (n_post + BLOCK_Q - 1) // BLOCK_Q
    pid_q = pid % num_q
    pid_p = (pid // num_q).to(tl.int64)
    offs_q = (pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)).to(tl.int64)
    mask_q = offs_q < n_post
    offs_i = tl.arange(0, K1P)
    offs_j = tl.arange(0, K2P)
    offs_b = tl.arange(0, BLOCK_B)
    compute_ty = d1_ptr.dtype.element_ty
    plane = n1.to(tl.int64) * n2 * n_post
    a_base = a_ptr + pid_p * plane
    acc = tl.full((K1P, K2P, BLOCK_Q), 0.0, dtype=compute_ty)
    for row in range(0, n1):
        t = tl.full((K2P, BLOCK_Q), 0.0, dtype=compute_ty)
        for b0 in range(0, n2, BLOCK_B):
            cols = b0 + offs_b
            mask_b = cols < n2
            d2 = tl.load(
                d2_ptr + offs_j[:, None] * n2 + cols[None, :],
                mask=(offs_j[:, None] < k2) & mask_b[None, :],
                other=0.0,
            )
            x = tl.load(
                a_base + (row * n2 + cols[:, None].to(tl.int64)) * n_post + offs_q[None, :],
                mask=mask_b[:, None] & mask_q[None, :],
                other=0.0,
            ).to(compute_ty)
            t = tl.dot(d2, x, t, input_precision=PRECISION, out_dtype=compute_ty)
        d1 = tl.load(d1_ptr + offs_i * n1 + row, mask=offs_i < k1, other=0.0)
        acc += d1[:, None, None] * t[None, :, :]
    base = pid_p * k1 * k2 * n_post
    index = (
        base
        + (offs_i[:, None, None] * k2 + offs_j[None, :, None]).to(tl.int64) * n_post
        + offs_q[None, None, :]
    )
    mask = (offs_i[:, None, None] < k1) & (offs_j[None, :, None] < k2) & mask_q[None, None, :]
    if MINUS:
        e = tl.load(e_ptr + index, mask=mask, other=0.0).to(compute_ty)
        acc = acc - tl.load(s_ptr) * e
    tl.store(out_ptr + index, acc, mask=mask)


@triton.jit
def _band_up2_kernel(
    small_ptr,  # pointer: small, contiguous (n_pre, k1, k2, n_post), compute dtype
    u1_ptr,  # pointer: U1, (n1, k1) row-major, compute dtype
    u2_ptr,  # pointer: U2, (n2, k2) row-major, compute dtype
    e_ptr,  # pointer: residual operand, contiguous (n_pre, n1, n2, n_post)
    out_ptr,  # pointer: output, contiguous (n_pre, n1, n2, n_post)
    n1,  # size: first band axis
    n2,  # size: second band axis
    k1,  # size: kept width on the first axis
    k2,  # size: kept width on the second axis
    n_post,  # size: trailing extent
    PRECISION: tl.constexpr,  # input_precision of tl.dot
    K2P: tl.constexpr,  # k2 padded to a power of two >= 16
    BLOCK_A: tl.constexpr,  # rows of the first axis per program
    BLOCK_B: tl.constexpr,  # rows of the second axis per program (>= 16)
    BLOCK_Q: tl.constexpr,  # trailing elements per program (>= 16)
):
    pid = tl.program_id(0)
    num_q = (n_post + BLOCK_Q - 1) // BLOCK_Q
    num_b = (n2 + BLOCK_B - 1) // BLOCK_B
    num_a = (n1 + BLOCK_A - 1) // BLOCK_A
    pid_q = pid % num_q
    pid_b = (pid // num_q) % num_b
    pid_a = (pid // num_q // num_b) % num_a
    pid_p = (pid // num_q // num_b // num_a).to(tl.int64)
    offs_q = (pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)).to(tl.int64)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_a = pid_a * BLOCK_A + tl.arange(0, BLOCK_A)
    offs_j = tl.arange(0, K2P)
    mask_q = offs_q < n_post
    mask_b = offs_b < n2
    mask_a = offs_a < n1
    compute_ty = u1_ptr.dtype.element_ty
    u2 = tl.load(
        u2_ptr + offs_b[:, None] * k2 + offs_j[None, :],
        mask=mask_b[:, None] & (offs_j[None, :] < k2),
        other=0.0,
    )
    small_base = small_ptr + pid_p * k1 * k2 * n_post
    acc = tl.full((BLOCK_A, BLOCK_B, BLOCK_Q), 0.0, dtype=compute_ty)
    for i in range(0, k1):
        lo = tl.load(
            small_base + (i * k2 + offs_j[:, None].to(tl.int64)) * n_post + offs_q[None, :],
            mask=(offs_j[:, None] < k2) & mask_q[None, :],
            other=0.0,
        )
        u = tl.dot(u2, lo, input_precision=PRECISION, out_dtype=compute_ty)  # (BLOCK_B, BLOCK_Q)
        u1 = tl.load(u1_ptr + offs_a * k1 + i, mask=mask_a, other=0.0)
        acc += u1[:, None, None] * u[None, :, :]
    index = (
        pid_p * n1 * n2 * n_post
        + (offs_a[:, None, None].to(tl.int64) * n2 + offs_b[None, :, None]) * n_post
        + offs_q[None, None, :]
    )
    mask = mask_a[:, None, None] & mask_b[None, :, None] & mask_q[None, None, :]
    e = tl.load(e_ptr + index, mask=mask, other=0.0).to(compute_ty)
    tl.store(out_ptr + index, (e - acc).to(out_ptr.dtype.element_ty), mask=mask)


def fused_applicable(shape: tuple[int, ...], dims: tuple[int, ...]) -> bool:
    """Whether the two-pass kernels serve this problem: exactly two band dims, adjacent,
    with a trailing extent of at least :data:`MIN_POST`."""
    if len(dims) != 2 or dims[1] != dims[0] + 1:
        return False
    return math.prod(shape[dims[1] + 1 :]) >= MIN_POST


def _pow2(n: int, floor: int = 16) -> int:
    return max(floor, triton.next_power_of_2(int(n)))


def _kernels(interpret: bool):
    """The launchable kernels for the current mode (see ``_common._kernel``)."""
    # lazy: only the interpreter needs it (see ``_common._kernel``)
    from triton.runtime.interpreter import InterpretedFunction

    if interpret:
        return tuple(
            k if isinstance(k, InterpretedFunction) else InterpretedFunction(k.fn)
            for k in (_band_down2_kernel, _band_up2_kernel)
        )
    return tuple(
        k if isinstance(k, triton.JITFunction) else triton.JITFunction(k.fn)
        for k in (_band_down2_kernel, _band_up2_kernel)
    )


def fused_band_project(
    a: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    *,
    b: torch.Tensor | None = None,
    b_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``small = D(a) - s * b`` and ``out = a - U(small)`` in two launches.

    The contract of :func:`fdseg_kernels._common.band_project`, for problems where
    :func:`fused_applicable` holds.

    Args:
        a: Contiguous tensor ``(N, C, *spatial)``.
        dims: The two adjacent band dims, increasing.
        widths: Kept width ``k`` per band dim.
        b: Optional contiguous tensor shaped like ``small``.
        b_scale: ``s``.

    Returns:
        ``(small, out)``: ``small`` in the compute dtype, ``out`` like ``a``.
    """
    return on_device_of(a, _fused, a, dims, widths, b, b_scale)


def _fused(a, dims, widths, b, b_scale):
    work = compute_dtype(a.dtype)
    d1, d2 = dims
    (k1, k2) = widths
    n1, n2 = a.shape[d1], a.shape[d2]
    pre = math.prod(a.shape[:d1])
    post = math.prod(a.shape[d2 + 1 :])
    small = torch.empty(low_band_shape(a.shape, dims, widths), dtype=work, device=a.device)
    out = torch.empty_like(a)
    interpret = interpreter_enabled()
    precision = dot_precision(work, interpret)
    down, up = _kernels(interpret)
    dm1 = downsample_matrix(n1, k1, dtype=work, device=a.device)
    dm2 = downsample_matrix(n2, k2, dtype=work, device=a.device)
    um1 = upsample_matrix(n1, k1, dtype=work, device=a.device)
    um2 = upsample_matrix(n2, k2, dtype=work, device=a.device)
    scale = _scalar(float(b_scale), work, str(a.device))
    block_q = min(64 if interpret else 32, _pow2(post))
    k1p, k2p = _pow2(k1), _pow2(k2)
    block_b = min(128 if interpret else 32, _pow2(n2))
    e = b if b is not None else small
    grid = (pre * triton.cdiv(post, block_q),)
    down[grid](
        a, dm1, dm2, e, small, scale, n1, n2, k1, k2, post,
        MINUS=b is not None, PRECISION=precision, K1P=k1p, K2P=k2p,
        BLOCK_B=block_b, BLOCK_Q=block_q,
    )  # fmt: skip
    block_a = min(64 if interpret else 16, _pow2(n1, 1))
    block_b2 = min(64 if interpret else 16, _pow2(n2))
    grid = (
        pre * triton.cdiv(n1, block_a) * triton.cdiv(n2, block_b2) * triton.cdiv(post, block_q),
    )
    up[grid](
        small, um1, um2, a, out, n1, n2, k1, k2, post,
        PRECISION=precision, K2P=k2p, BLOCK_A=block_a, BLOCK_B=block_b2, BLOCK_Q=block_q,
    )  # fmt: skip
    return small, out
