"""Timing and memory measurement of the band operators (``fdseg bench``, ``benchmarks/``).

Every figure is meant to be read as a ratio to a peer measured in the same run:
the ``torch`` (torch.fft) backend and the paper's pipeline
(:mod:`fdseg_core.bands.paper`). Times are medians of repeated runs after a
warm-up; on CUDA they come from CUDA events. Effective bandwidth counts the
bytes that must move: each input read once and each output written once.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch

from fdseg_core.bands import band_fuse, band_split, band_width, paper_band_fuse, paper_band_split

__all__ = [
    "OPS",
    "PAPER",
    "BenchRow",
    "make_call",
    "moved_bytes",
    "time_call",
    "device_time_call",
    "peak_rss_growth",
    "run_benchmarks",
]

#: Operations measured: forward, and forward + backward (gradients of every input).
OPS: tuple[str, ...] = ("split", "split+bwd", "fuse", "fuse+bwd")
#: Name of the paper's pipeline in result tables.
PAPER = "paper"


@dataclass(frozen=True)
class BenchRow:
    """One measured (backend, op, shape, dtype)."""

    backend: str
    op: str
    shape: tuple[int, ...]
    dtype: str
    median_ms: float
    gbps: float
    speedup: float | None  # over the torch.fft backend measured in the same run
    pct_copy_bw: float | None  # CUDA: percent of the device's measured copy bandwidth
    #: CUDA: GPU busy time per call (sum of its kernels, from the profiler), in ms. Below
    #: ``median_ms`` when the host cannot launch the kernels as fast as the GPU runs them.
    device_ms: float | None = None
    #: CUDA: the bytes of ``gbps`` over ``device_ms``, in percent of the copy bandwidth.
    pct_copy_bw_device: float | None = None
    #: Band layout of the backends (the paper's pipeline row is always its text's).
    layout: str = "centered"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def _low_shape(shape: Sequence[int], beta: float, dims: Sequence[int]) -> tuple[int, ...]:
    return tuple(band_width(s, beta) if i in dims else s for i, s in enumerate(shape))


def moved_bytes(
    op: str, shape: Sequence[int], dtype: torch.dtype, beta: float, dims: Sequence[int] = (2, 3)
) -> int:
    """Bytes an ideal implementation must move: inputs read once, outputs written once.

    Args:
        op: One of :data:`OPS`.
        shape: Input shape ``(N, C, *spatial)``.
        dtype: Element type.
        beta: Relative band width.
        dims: Band dims.

    Returns:
        The byte count (forward+backward: the forward's, plus the gradients read and written).
    """
    item = torch.empty((), dtype=dtype).element_size()
    full = math.prod(shape)
    low = math.prod(_low_shape(shape, beta, dims))
    # split: x -> (low, high); fuse: (low, high) -> y
    fwd = full + low + full
    return item * (2 * fwd if op.endswith("+bwd") else fwd)


def make_call(
    op: str,
    backend: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    device: str,
    beta: float = 0.1,
    dims: Sequence[int] = (2, 3),
    seed: int = 0,
    layout: str = "centered",
) -> Callable[[], None]:
    """A zero-argument callable that runs one measured operation.

    Args:
        op: One of :data:`OPS`.
        backend: A band backend name, or :data:`PAPER` for the paper's pipeline.
        shape: Input shape.
        dtype: Element type.
        device: ``"cpu"`` or ``"cuda"``.
        beta: Relative band width.
        dims: Band dims.
        seed: Seed of the random inputs.
        layout: Band layout of the backends (``"centered"`` or ``"reference"``); the
            paper's pipeline is always the shifted one of its text.

    Returns:
        The callable (inputs are allocated once, outside of it).
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {list(OPS)}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(shape), generator=gen).to(device=device, dtype=dtype)
    low = torch.randn(_low_shape(shape, beta, dims), generator=gen).to(device=device, dtype=dtype)
    dims = tuple(dims)
    if backend == PAPER:

        def split_fn(t):
            return paper_band_split(t, beta, dims=dims)

        def fuse_fn(lo, hi):
            return paper_band_fuse(lo, hi, beta, dims=dims)
    else:

        def split_fn(t):
            return band_split(t, beta, dims=dims, layout=layout, backend=backend)

        def fuse_fn(lo, hi):
            return band_fuse(lo, hi, beta, dims=dims, layout=layout, backend=backend)

    backward = op.endswith("+bwd")
    if backward:
        x.requires_grad_(True)
        low.requires_grad_(True)

    if op.startswith("split"):

        def call() -> None:
            lo, hi = split_fn(x)
            if backward:
                torch.autograd.backward((lo, hi), (torch.ones_like(lo), torch.ones_like(hi)))
                x.grad = None
    else:

        def call() -> None:
            y = fuse_fn(low, x)
            if backward:
                y.backward(torch.ones_like(y))
                x.grad = None
                low.grad = None

    return call


def time_call(
    call: Callable[[], None],
    *,
    device: str,
    warmup: int = 1,
    repeats: int = 5,
) -> float:
    """Median wall time of ``call`` in milliseconds (CUDA events on a GPU)."""
    for _ in range(warmup):
        call()
    times = []
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def device_time_call(call: Callable[[], None], *, repeats: int = 5) -> float:
    """GPU busy time of ``call`` in milliseconds: the sum of its kernels' durations.

    Measured with :mod:`torch.profiler` over ``repeats`` calls (after the caller's
    warm-up). Unlike :func:`time_call` it leaves out the time the GPU waits for the
    host to launch the next kernel, so it measures the kernels themselves.
    """
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            call()
        torch.cuda.synchronize()
    total_us = sum(evt.self_device_time_total for evt in prof.key_averages())
    return total_us / 1e3 / repeats


def cuda_copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Measured device-to-device copy bandwidth in GB/s (read + write counted)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = time_call(lambda: dst.copy_(src), device="cuda", warmup=3, repeats=10)
    return 2 * nbytes / (ms * 1e-3) / 1e9


# VmHWM (the peak RSS of this address space) rather than ru_maxrss, which a child
# inherits from its parent across execve on Linux.
_RSS_SCRIPT = r"""
import json, sys, torch
from fdseg_core.benchmark import make_call

def peak_kib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")

op, backend, shape, dtype = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
torch.set_num_threads(int(sys.argv[5]))
call = make_call(op, backend, shape, getattr(torch, dtype), "cpu")
before = peak_kib()
call()
after = peak_kib()
print(json.dumps({"growth_bytes": (after - before) * 1024}))
"""


def peak_rss_growth(
    op: str, backend: str, shape: Sequence[int], dtype: str = "float32", threads: int | None = None
) -> int:
    """Growth of peak RSS (bytes) while running one operation once, in a fresh process.

    The inputs are allocated before the baseline is read, so the growth counts
    the outputs and every temporary (Linux only: ``VmHWM`` of ``/proc/self/status``).
    """
    threads = threads or torch.get_num_threads()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _RSS_SCRIPT,
            op,
            backend,
            json.dumps(list(shape)),
            dtype,
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1])["growth_bytes"])


def run_benchmarks(
    shapes: Iterable[Sequence[int]],
    backends: Sequence[str],
    *,
    ops: Sequence[str] = OPS,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    beta: float = 0.1,
    warmup: int = 1,
    repeats: int = 5,
    progress: Callable[[str], None] | None = None,
    layout: str = "centered",
) -> list[BenchRow]:
    """Time every (shape, op, backend) and express it against the torch.fft backend.

    Args:
        shapes: Input shapes ``(N, C, *spatial)``.
        backends: Band backends and/or :data:`PAPER`; ``"torch"`` is added when
            missing, as the reference of the speed-up column.
        ops: Subset of :data:`OPS`.
        dtype: Element type.
        device: ``"cpu"`` or ``"cuda"``.
        beta: Relative band width.
        warmup: Untimed runs before timing.
        repeats: Timed runs (the median is reported).
        progress: Called with a label before each measurement.
        layout: Band layout of the backends (``"reference"``: the paper's public code).

    Returns:
        One :class:`BenchRow` per measurement.
    """
    names = list(dict.fromkeys(["torch", *backends]))
    copy_bw = cuda_copy_bandwidth() if device.startswith("cuda") else None
    rows: list[BenchRow] = []
    for shape in shapes:
        shape = tuple(int(s) for s in shape)
        for op in ops:
            ref_ms = None
            for backend in names:
                if progress is not None:
                    progress(f"{backend} {op} {'x'.join(map(str, shape))}")
                call = make_call(op, backend, shape, dtype, device, beta, layout=layout)
                ms = time_call(call, device=device, warmup=warmup, repeats=repeats)
                device_ms = (
                    device_time_call(call, repeats=repeats) if device.startswith("cuda") else None
                )
                del call
                if backend == "torch":
                    ref_ms = ms
                nbytes = moved_bytes(op, shape, dtype, beta)
                gbps = nbytes / (ms * 1e-3) / 1e9
                rows.append(
                    BenchRow(
                        backend=backend,
                        op=op,
                        shape=shape,
                        dtype=str(dtype).removeprefix("torch."),
                        median_ms=ms,
                        gbps=gbps,
                        speedup=(ref_ms / ms) if ref_ms else None,
                        pct_copy_bw=(100.0 * gbps / copy_bw) if copy_bw else None,
                        device_ms=device_ms,
                        pct_copy_bw_device=(
                            100.0 * nbytes / (device_ms * 1e-3) / 1e9 / copy_bw
                            if copy_bw and device_ms
                            else None
                        ),
                        layout=layout,
                    )
                )
    return rows
