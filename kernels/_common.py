"""The one kernel behind both band operators: a small matrix applied along one axis.

Both public ops reduce to the same core (see :mod:`fdseg_core.bands.operators`)::

    small = D(a) - s * b          # D: per-axis (k, n) down-sampling, all band axes
    out   = a - U(small)          # U: per-axis (n, k) up-sampling, all band axes

* split: ``a = x``, no ``b``; ``low = small``, ``high = out``;
* fuse: ``a = high``, ``b = low``, ``s = 1`` (``s = c`` in the split's backward).

Each per-axis step is ``out[p, i, q] = sum_j M[i, j] * a[p, j, q]`` on a
``(pre, n, post)`` view of a contiguous tensor, computed by
:func:`_band_apply_kernel` with ``tl.dot`` on tiles and an optional fused
epilogue (``- s * b`` after the last down-sampling, ``a -`` with the cast to
the output dtype in the last up-sampling). When the axis is the last in memory
(``post == 1``) the same kernel runs on the transposed view ``(1, n, pre)``
with the row stride ``n``, so that its tiles stay 2D and coalesced.

Layers: the ``@triton.jit`` kernel; :func:`apply_along` (host launcher: strides,
blocks, grid, autotuning); :func:`band_project` (the sequence of steps); :func:`project`
(the kernel design chosen per call: these per-axis kernels or the two-pass ones of
:mod:`fdseg_kernels.band_fused`, imported here); :func:`check_band_args` and
:func:`refuse_autograd` (the checks of the public launchers in
:mod:`fdseg_kernels.band_split` and ``band_fuse``). Dtypes, dot precision and the device
context come from :mod:`fdseg_kernels._launch` (re-exported here).
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

from fdseg_core.bands.operators import downsample_matrix, upsample_matrix
from fdseg_core.choices import DEFAULT_KERNEL, KERNELS
from fdseg_core.errors import InputError
from fdseg_kernels._env import interpreter_enabled, triton_runs_on
from fdseg_kernels._launch import (
    GPU_FLOAT32_PRECISION,
    _scalar,
    compute_dtype,
    dot_precision,
    on_device_of,
)
from fdseg_kernels.band_fused import fused_applicable, fused_band_project

__all__ = [
    "GPU_FLOAT32_PRECISION",
    "IMPLS",
    "project",
    "EPILOGUE_NONE",
    "EPILOGUE_MINUS",
    "EPILOGUE_RESIDUAL",
    "apply_along",
    "band_project",
    "check_band_args",
    "refuse_autograd",
    "compute_dtype",
    "dot_precision",
    "launch_config",
    "on_device_of",
]

#: Epilogue of one per-axis step (the ``EPILOGUE`` constexpr of the kernel).
EPILOGUE_NONE = 0  # out = M a
EPILOGUE_MINUS = 1  # out = M a - s * e
EPILOGUE_RESIDUAL = 2  # out = e - M a

_SUPPORTED = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@triton.jit
def _band_apply_kernel(
    a_ptr,  # pointer: input a, viewed (n_pre, n_cols, n_post); any float dtype
    m_ptr,  # pointer: matrix M, (m_rows, n_cols) row-major; float32 or float64 (= compute dtype)
    e_ptr,  # pointer: epilogue operand e, viewed (n_pre, m_rows, n_post); unused if EPILOGUE == 0
    out_ptr,  # pointer: output, viewed (n_pre, m_rows, n_post)
    n_pre,  # size: leading (batch-like) extent
    m_rows,  # size: rows of M = output length along the axis
    n_cols,  # size: columns of M = input length along the axis (the contraction)
    n_post,  # size: trailing extent
    a_s_pre,  # stride of a along pre
    a_s_col,  # stride of a along the axis
    a_s_post,  # stride of a along post
    e_s_pre,  # stride of e along pre
    e_s_row,  # stride of e along the axis
    e_s_post,  # stride of e along post
    o_s_pre,  # stride of out along pre
    o_s_row,  # stride of out along the axis
    o_s_post,  # stride of out along post
    s_ptr,  # pointer: one-element tensor s of EPILOGUE_MINUS, in the compute dtype
    EPILOGUE: tl.constexpr,  # 0: M a; 1: M a - s e; 2: e - M a
    PRECISION: tl.constexpr,  # input_precision of tl.dot: "ieee" or "tf32x3" (float32 on GPU)
    BLOCK_M: tl.constexpr,  # rows of M per program (>= 16 for tl.dot)
    BLOCK_K: tl.constexpr,  # contraction step (>= 16)
    BLOCK_Q: tl.constexpr,  # post elements per program (>= 16)
):
    # one program: the (BLOCK_M, BLOCK_Q) output tile (pid_p, rows i, post q)
    # integer arithmetic and tl.full, not tl.cdiv / tl.zeros: those helpers of
    # triton.language.standard are @jit functions fixed at `import triton`, which the
    # interpreter cannot call if TRITON_INTERPRET was set after that import (see _kernel)
    pid = tl.program_id(0)
    num_q = (n_post + BLOCK_Q - 1) // BLOCK_Q
    num_m = (m_rows + BLOCK_M - 1) // BLOCK_M
    pid_q = pid % num_q
    pid_m = (pid // num_q) % num_m
    pid_p = (pid // num_q // num_m).to(tl.int64)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_q = (pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < m_rows
    mask_q = offs_q < n_post

    compute_ty = m_ptr.dtype.element_ty
    acc = tl.full((BLOCK_M, BLOCK_Q), 0.0, dtype=compute_ty)
    a_base = a_ptr + pid_p * a_s_pre
    for k0 in range(0, n_cols, BLOCK_K):
        cols = k0 + offs_k
        mask_k = cols < n_cols
        m_tile = tl.load(
            m_ptr + offs_m[:, None] * n_cols + cols[None, :],
            mask=mask_m[:, None] & mask_k[None, :],
            other=0.0,
        )
        a_tile = tl.load(
            a_base + cols[:, None].to(tl.int64) * a_s_col + offs_q[None, :] * a_s_post,
            mask=mask_k[:, None] & mask_q[None, :],
            other=0.0,
        ).to(compute_ty)
        # "ieee": exact products (FMA); "tf32x3": three TF32 tensor-core products whose
        # sum carries ~float32 accuracy (see dot_precision)
        acc = tl.dot(m_tile, a_tile, acc, input_precision=PRECISION, out_dtype=compute_ty)

    rows = offs_m[:, None].to(tl.int64)
    mask = mask_m[:, None] & mask_q[None, :]
    if EPILOGUE != 0:
        e = tl.load(
            e_ptr + pid_p * e_s_pre + rows * e_s_row + offs_q[None, :] * e_s_post,
            mask=mask,
            other=0.0,
        ).to(compute_ty)
        if EPILOGUE == 1:
            # s is read from memory in the compute dtype: a Python float argument would be
            # passed as float32 and cost float64 work 1e-8 of accuracy
            acc = acc - tl.load(s_ptr) * e
        else:
            acc = e - acc
    tl.store(
        out_ptr + pid_p * o_s_pre + rows * o_s_row + offs_q[None, :] * o_s_post,
        acc.to(out_ptr.dtype.element_ty),
        mask=mask,
    )


# GPU configurations, autotuned per shape (timed on an H100: kernels/README.md): thin
# row blocks for the down-sampling (M has k rows), thin contraction blocks for the
# up-sampling (M has k columns); BLOCK_M = 32 divides n = 160 of the default shapes.
_GPU_CONFIGS = [
    triton.Config({"BLOCK_M": 16, "BLOCK_K": 32, "BLOCK_Q": 128}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 16, "BLOCK_K": 64, "BLOCK_Q": 128}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 32, "BLOCK_K": 32, "BLOCK_Q": 128}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 16, "BLOCK_K": 32, "BLOCK_Q": 256}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 32, "BLOCK_K": 16, "BLOCK_Q": 128}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 32, "BLOCK_K": 16, "BLOCK_Q": 256}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_M": 64, "BLOCK_K": 16, "BLOCK_Q": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 64, "BLOCK_K": 16, "BLOCK_Q": 128}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 128, "BLOCK_K": 16, "BLOCK_Q": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 64, "BLOCK_K": 32, "BLOCK_Q": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 64, "BLOCK_K": 64, "BLOCK_Q": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 16, "BLOCK_K": 64, "BLOCK_Q": 256}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_K": 16, "BLOCK_Q": 256}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_M": 128, "BLOCK_K": 16, "BLOCK_Q": 128}, num_warps=8, num_stages=2),
]


def _pow2_at_least_16(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _prune_configs(configs, named_args, **kwargs):
    """Drop configs whose row or contraction block exceeds the padded problem by > 2x."""
    m_cap = 2 * _pow2_at_least_16(named_args["m_rows"])
    k_cap = 2 * _pow2_at_least_16(named_args["n_cols"])
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= m_cap and c.kwargs["BLOCK_K"] <= k_cap]
    return kept or configs[:1]


@functools.lru_cache(maxsize=2)
def _kernel(interpret: bool):
    """The launchable kernel for the current mode (decided per call, built once per mode).

    ``@triton.jit`` reads ``TRITON_INTERPRET`` when it decorates; the variable
    may have changed since this module was imported, so the other variant is
    rebuilt from the same Python function when needed. On the GPU the kernel
    is wrapped in ``triton.autotune`` keyed on the problem sizes; under the
    interpreter a single configuration is used (autotuning needs a GPU timer).
    """
    # lazy: only the interpreter needs it, and it loads numpy and Triton's interpreter
    # (~0.1 s) that compiled GPU runs never use; Triton imports it lazily too
    from triton.runtime.interpreter import InterpretedFunction

    base = _band_apply_kernel
    if interpret:
        return base if isinstance(base, InterpretedFunction) else InterpretedFunction(base.fn)
    jit = base if isinstance(base, triton.JITFunction) else triton.JITFunction(base.fn)
    return triton.autotune(
        configs=_GPU_CONFIGS,
        key=["n_pre", "m_rows", "n_cols", "n_post", "EPILOGUE", "PRECISION"],
        prune_configs_by={"early_config_prune": _prune_configs},
    )(jit)


def launch_config(m_rows: int, n_cols: int, n_post: int) -> dict[str, int]:
    """Block sizes used under the interpreter: one tile covers as much as possible.

    The interpreter costs about the same per program whatever its size, so
    the blocks are the padded problem sizes, capped to keep numpy tiles small.

    Args:
        m_rows: Rows of the matrix (output length along the axis).
        n_cols: Columns of the matrix (contraction length).
        n_post: Trailing extent of the view.

    Returns:
        ``{"BLOCK_M": ..., "BLOCK_K": ..., "BLOCK_Q": ...}``, powers of two >= 16.
    """
    return {
        "BLOCK_M": min(128, _pow2_at_least_16(m_rows)),
        "BLOCK_K": min(128, _pow2_at_least_16(n_cols)),
        "BLOCK_Q": min(256, _pow2_at_least_16(n_post)),
    }


def apply_along(
    a: torch.Tensor,
    matrix: torch.Tensor,
    dim: int,
    *,
    out_dtype: torch.dtype,
    epilogue: int = EPILOGUE_NONE,
    e: torch.Tensor | None = None,
    e_scale: float = 1.0,
) -> torch.Tensor:
    """``M`` ``(m, n)`` applied along ``dim`` of ``a``, with an optional fused epilogue.

    Args:
        a: Contiguous tensor with ``a.shape[dim] == n``.
        matrix: Contiguous ``(m, n)`` matrix in the compute dtype.
        dim: The axis.
        out_dtype: Dtype of the result.
        epilogue: :data:`EPILOGUE_NONE`, :data:`EPILOGUE_MINUS` (``M a - s e``) or
            :data:`EPILOGUE_RESIDUAL` (``e - M a``).
        e: Contiguous epilogue operand, shaped like the result.
        e_scale: ``s`` of :data:`EPILOGUE_MINUS`.

    Returns:
        Contiguous tensor shaped like ``a`` with ``m`` on ``dim``.
    """
    shape = tuple(a.shape)
    m_rows, n_cols = matrix.shape
    pre = math.prod(shape[:dim])
    post = math.prod(shape[dim + 1 :])
    out_shape = (*shape[:dim], m_rows, *shape[dim + 1 :])
    out = torch.empty(out_shape, dtype=out_dtype, device=a.device)
    if out.numel() == 0:
        return out
    if e is None:
        e = out  # never read (EPILOGUE_NONE)
    if post == 1:
        # last axis in memory: run on the transposed view (1, n, pre), rows strided by n
        n_pre, n_post = 1, pre
        a_strides, o_strides = (0, 1, n_cols), (0, 1, m_rows)
    else:
        n_pre, n_post = pre, post
        a_strides, o_strides = (n_cols * post, post, 1), (m_rows * post, post, 1)
    interpret = interpreter_enabled()
    precision = dot_precision(matrix.dtype, interpret)
    scale = _scalar(float(e_scale), matrix.dtype, str(a.device))
    args = (a, matrix, e, out, n_pre, m_rows, n_cols, n_post, *a_strides, *o_strides, *o_strides)
    if interpret:
        blocks = launch_config(m_rows, n_cols, n_post)
        grid = (_grid_size(n_pre, m_rows, n_post, blocks),)
        _kernel(True)[grid](*args, scale, EPILOGUE=epilogue, PRECISION=precision, **blocks)
        return out
    key = (
        a.device.index,
        n_pre,
        m_rows,
        n_cols,
        n_post,
        epilogue,
        precision,
        a.dtype,
        matrix.dtype,
        e.dtype,
        out_dtype,
    )
    config = _TUNED.get(key)
    if config is None:
        # first call for this problem: autotune (Triton benchmarks the configurations),
        # then remember the winner so that later calls skip the autotuner's Python
        tuner = _kernel(False)
        tuner[_grid(n_pre, m_rows, n_post)](*args, scale, EPILOGUE=epilogue, PRECISION=precision)
        _TUNED[key] = tuner.best_config
        return out
    _kernel(False).fn[(_grid_size(n_pre, m_rows, n_post, config.kwargs),)](
        *args, scale, EPILOGUE=epilogue, PRECISION=precision, **_launch_kwargs(config)
    )
    return out


#: Autotuned configuration per problem (device, sizes, epilogue, precision, dtypes).
_TUNED: dict[tuple, triton.Config] = {}


def _grid_size(n_pre: int, m_rows: int, n_post: int, meta: dict) -> int:
    return n_pre * triton.cdiv(m_rows, meta["BLOCK_M"]) * triton.cdiv(n_post, meta["BLOCK_Q"])


def _grid(n_pre: int, m_rows: int, n_post: int):
    def grid(meta):
        return (_grid_size(n_pre, m_rows, n_post, meta),)

    return grid


def _launch_kwargs(config: triton.Config) -> dict:
    """Block sizes and launch options of a configuration, as keyword arguments of a launch."""
    kwargs = dict(config.kwargs)
    kwargs.update(num_warps=config.num_warps, num_stages=config.num_stages)
    return kwargs


def band_project(
    a: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    *,
    b: torch.Tensor | None = None,
    b_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared core: ``small = D(a) - s * b`` and ``out = a - U(small)``.

    Down-sampling runs along ``dims`` in order, the ``- s * b`` fused into the
    last step; up-sampling runs in reverse order, the subtraction from ``a``
    and the cast to ``a``'s dtype fused into the last step (along ``dims[0]``).

    Args:
        a: Contiguous tensor ``(N, C, *spatial)``, float16/bfloat16/float32/float64.
        dims: Band dims, increasing.
        widths: Kept width ``k`` per band dim.
        b: Optional contiguous tensor shaped like ``small`` (any supported dtype).
        b_scale: ``s``.

    Returns:
        ``(small, out)``: ``small`` in the compute dtype (float32, or float64 for
        float64 input) with each band dim of size ``k``; ``out`` shaped like ``a``
        in ``a``'s dtype.
    """
    return on_device_of(a, _band_project, a, dims, widths, b, b_scale)


#: Kernel designs (:data:`fdseg_core.choices.KERNELS`): the per-axis kernels (one launch
#: per axis and direction) or the two-pass kernels of ``band_fused`` (both band axes per
#: launch), or "auto".
IMPLS = KERNELS


def project(
    a: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    *,
    b: torch.Tensor | None = None,
    b_scale: float = 1.0,
    impl: str = DEFAULT_KERNEL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`band_project` with the kernel design chosen per call.

    ``"fused"`` and ``"auto"`` run the two-pass kernels where they apply (two adjacent
    band dims, a trailing extent of at least 16) and the per-axis ones elsewhere.
    """
    if impl not in IMPLS:
        raise InputError(f"impl must be one of {list(IMPLS)}, got {impl!r}")
    if impl != "per_axis" and fused_applicable(tuple(a.shape), dims):
        return fused_band_project(a, dims, widths, b=b, b_scale=b_scale)
    return band_project(a, dims, widths, b=b, b_scale=b_scale)


def _band_project(
    a: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    b: torch.Tensor | None,
    b_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    work = compute_dtype(a.dtype)
    t = a
    last = len(dims) - 1
    for i, (d, k) in enumerate(zip(dims, widths, strict=True)):
        fuse_b = i == last and b is not None
        t = apply_along(
            t,
            downsample_matrix(a.shape[d], k, dtype=work, device=a.device),
            d,
            out_dtype=work,
            epilogue=EPILOGUE_MINUS if fuse_b else EPILOGUE_NONE,
            e=b if fuse_b else None,
            e_scale=b_scale,
        )
    small = t
    for d, k in zip(reversed(dims[1:]), reversed(widths[1:]), strict=True):
        t = apply_along(
            t, upsample_matrix(a.shape[d], k, dtype=work, device=a.device), d, out_dtype=work
        )
    out = apply_along(
        t,
        upsample_matrix(a.shape[dims[0]], widths[0], dtype=work, device=a.device),
        dims[0],
        out_dtype=a.dtype,
        epilogue=EPILOGUE_RESIDUAL,
        e=a,
    )
    return small, out


def _check_tensor(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _SUPPORTED:
        raise TypeError(
            f"{name} has dtype {t.dtype}; the Triton kernels take float16, bfloat16, "
            "float32 or float64"
        )
    if t.ndim not in (4, 5):
        raise InputError(
            f"{name} must have shape (N, C, *spatial) with 2 or 3 spatial dims, "
            f"got {t.ndim} dims {tuple(t.shape)}"
        )
    if not triton_runs_on(t.device):
        raise InputError(
            f"{name} is on '{t.device}': the Triton kernels need a CUDA tensor "
            "(or TRITON_INTERPRET=1 to run them on the CPU through Triton's interpreter)"
        )
    return t


def check_band_args(
    name: str, t: object, dims: object, widths: object
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validate a full-size tensor and its band; return ``(dims, widths)`` normalised.

    Args:
        name: Name of the tensor in error messages.
        t: The full-size tensor (``x`` of a split, ``high`` of a fusion).
        dims: Band dims: distinct spatial dims (negative allowed), in any order.
        widths: Kept width per band dim, ``1 <= k < n``.

    Returns:
        Dims sorted increasingly with their widths in the same order.

    Raises:
        TypeError: Not a tensor, unsupported dtype, or non-integer dims/widths.
        ValueError: Bad rank, device, dims or widths.
    """
    t = _check_tensor(name, t)
    if not isinstance(dims, (tuple, list)) or not isinstance(widths, (tuple, list)):
        raise TypeError(f"dims and widths must be tuples of ints, got {dims!r} and {widths!r}")
    for v in (*dims, *widths):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"dims and widths must hold ints, got {v!r}")
    if not 1 <= len(dims) <= t.ndim - 2 or len(widths) != len(dims):
        raise InputError(
            f"dims={tuple(dims)} and widths={tuple(widths)} must have the same length, "
            f"1 to {t.ndim - 2}"
        )
    norm = [d + t.ndim if d < 0 else d for d in dims]
    if any(not 2 <= d < t.ndim for d in norm) or len(set(norm)) != len(norm):
        raise InputError(
            f"dims={tuple(dims)} must be distinct spatial dims of a {t.ndim}-dim tensor "
            f"(spatial dims are {tuple(range(2, t.ndim))})"
        )
    pairs = sorted(zip(norm, widths, strict=True))
    for d, k in pairs:
        if not 1 <= k < t.shape[d]:
            raise InputError(f"width k={k} on dim {d} must satisfy 1 <= k < n={t.shape[d]}")
    return tuple(d for d, _ in pairs), tuple(k for _, k in pairs)


def refuse_autograd(name: str, *tensors: torch.Tensor) -> None:
    """Refuse inputs that need a gradient: these launchers record no graph.

    Raises:
        ValueError: Grad mode is on and one of ``tensors`` requires a gradient.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise InputError(
            f"fdseg_kernels.{name} computes no gradient (the kernels' autograd lives in "
            "the custom ops); for a differentiable call use fdseg_core.bands."
            f"{name.removesuffix('_triton')}(..., backend='triton', kernel=...), or call "
            "this one under torch.no_grad()"
        )
