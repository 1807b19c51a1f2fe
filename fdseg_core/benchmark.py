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

from fdseg_core.bands import (
    band_fuse,
    band_split,
    low_band_shape_at,
    paper_band_fuse,
    paper_band_split,
)
from fdseg_core.choices import BENCH_OPS, DEFAULT_BAND_DIMS, DEFAULT_BETA, FUSIONS
from fdseg_core.errors import InputError
from fdseg_core.nn import FrequencyDisentangledNet
from fdseg_core.train.losses import DiceCELoss

__all__ = [
    "MODES",
    "OPS",
    "PAPER",
    "BenchRow",
    "StepRow",
    "make_step_call",
    "run_step_benchmarks",
    "make_call",
    "moved_bytes",
    "time_call",
    "device_time_call",
    "cuda_graph_call",
    "peak_rss_growth",
    "run_benchmarks",
]

#: Operations measured: forward, and forward + backward (gradients of every input).
OPS: tuple[str, ...] = BENCH_OPS
#: Name of the paper's pipeline in result tables.
PAPER = "paper"
#: How a measured call runs: as written; through ``torch.compile`` (one graph, the band
#: ops opaque custom ops); or replayed from a CUDA graph (no host work per call: CUDA).
MODES: tuple[str, ...] = ("eager", "compiled", "cuda-graph")


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
    #: How the call ran (:data:`MODES`).
    mode: str = "eager"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def moved_bytes(
    op: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    beta: float,
    dims: Sequence[int] = DEFAULT_BAND_DIMS,
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
    low = math.prod(low_band_shape_at(shape, dims, beta))
    # split: x -> (low, high); fuse: (low, high) -> y
    fwd = full + low + full
    return item * (2 * fwd if op.endswith("+bwd") else fwd)


def make_call(
    op: str,
    backend: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    device: str,
    beta: float = DEFAULT_BETA,
    dims: Sequence[int] = DEFAULT_BAND_DIMS,
    seed: int = 0,
    layout: str = "centered",
    mode: str = "eager",
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
        mode: One of :data:`MODES`. ``"compiled"`` compiles the op's function with
            ``torch.compile(fullgraph=True)``; ``"cuda-graph"`` captures the whole call
            (forward, and backward for ``+bwd``) once after a warm-up and replays it.

    Returns:
        The callable (inputs are allocated once, outside of it).
    """
    if op not in OPS:
        raise InputError(f"unknown op {op!r}; expected one of {list(OPS)}")
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
    if mode == "cuda-graph" and not str(device).startswith("cuda"):
        raise InputError("mode 'cuda-graph' needs a CUDA device")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(shape), generator=gen).to(device=device, dtype=dtype)
    low = torch.randn(low_band_shape_at(shape, dims, beta), generator=gen).to(
        device=device, dtype=dtype
    )
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

    if mode == "compiled":
        split_fn = torch.compile(split_fn, fullgraph=True, dynamic=False)
        fuse_fn = torch.compile(fuse_fn, fullgraph=True, dynamic=False)
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

    if mode == "cuda-graph":
        return cuda_graph_call(call)
    return call


def cuda_graph_call(call: Callable[[], None], warmup: int = 3) -> Callable[[], None]:
    """``call`` captured in a CUDA graph (after a warm-up on a side stream, which runs
    the autotuner and fills the caches); the returned callable replays it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    return graph.replay


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
    from torch.profiler import ProfilerActivity, profile  # CUDA timing only: loaded on use

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
from fdseg_core.errors import InputError

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
    beta: float = DEFAULT_BETA,
    warmup: int = 1,
    repeats: int = 5,
    progress: Callable[[str], None] | None = None,
    layout: str = "centered",
    modes: Sequence[str] = ("eager",),
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
        modes: Execution modes (:data:`MODES`); the paper's pipeline runs eagerly only.

    Returns:
        One :class:`BenchRow` per measurement; the speed-up is over the eager
        torch.fft backend of the same shape and op.
    """
    names = list(dict.fromkeys(["torch", *backends]))
    copy_bw = cuda_copy_bandwidth() if device.startswith("cuda") else None
    rows: list[BenchRow] = []
    plan = [(b, "eager") for b in names]
    plan += [(b, m) for m in modes if m != "eager" for b in names if b != PAPER]
    for shape in shapes:
        shape = tuple(int(s) for s in shape)
        for op in ops:
            ref_ms = None
            for backend, mode in plan:
                if progress is not None:
                    progress(f"{backend} {mode} {op} {'x'.join(map(str, shape))}")
                call = make_call(op, backend, shape, dtype, device, beta, layout=layout, mode=mode)
                ms = time_call(call, device=device, warmup=warmup, repeats=repeats)
                device_ms = (
                    device_time_call(call, repeats=repeats) if device.startswith("cuda") else None
                )
                del call
                if backend == "torch" and mode == "eager":
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
                        mode=mode,
                    )
                )
    return rows


@dataclass(frozen=True)
class StepRow:
    """One measured training step (forward, loss, backward, optimiser step)."""

    backbone: str
    fusion: str
    patch: int
    batch: int
    mode: str
    median_ms: float
    overhead: float | None  # vs fusion "none" of the same size and mode, measured in the run
    device_ms: float | None = None  # CUDA: GPU busy time per step (the regression metric)
    device_overhead: float | None = None  # the same ratio on device_ms

    def as_dict(self) -> dict:
        return asdict(self)


def make_step_call(
    fusion: str,
    patch: int,
    *,
    backbone: str = "unet3d",
    batch: int = 2,
    device: str = "cpu",
    backend: str = "auto",
    mode: str = "eager",
    seed: int = 0,
) -> Callable[[], None]:
    """One AdamW step of Dice + cross-entropy on a ``batch x 1 x patch^3`` batch.

    Args:
        fusion: ``"none"``, ``"early"`` or ``"late"``.
        patch: Cubic patch size.
        backbone: Registered backbone.
        batch: Batch size.
        device: ``"cpu"`` or ``"cuda"``.
        backend: Band backend.
        mode: One of :data:`MODES` (``"compiled"``: ``torch.compile`` of the model;
            ``"cuda-graph"``: ``torch.compile(mode="reduce-overhead")``, which captures
            CUDA graphs).
        seed: Seed of the weights and the batch.
    """
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
    torch.manual_seed(seed)
    net = FrequencyDisentangledNet(backbone, 1, 3, fusion=fusion, backend=backend).to(device)
    model = net
    if mode == "compiled":
        model = torch.compile(net)
    elif mode == "cuda-graph":
        model = torch.compile(net, mode="reduce-overhead")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss()
    x = torch.randn(batch, 1, patch, patch, patch, device=device)
    y = torch.randint(0, 3, (batch, patch, patch, patch), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def run_step_benchmarks(
    patches: Iterable[int],
    *,
    fusions: Sequence[str] = FUSIONS,
    backbone: str = "unet3d",
    batch: int = 2,
    device: str = "cpu",
    backend: str = "auto",
    modes: Sequence[str] = ("eager",),
    warmup: int = 2,
    repeats: int = 5,
    progress: Callable[[str], None] | None = None,
) -> list[StepRow]:
    """The training-step overhead table: every fusion against ``"none"``, per patch size
    and mode, measured in one run; on CUDA also the GPU busy time per step."""
    rows: list[StepRow] = []
    for patch in patches:
        for mode in modes:
            base_ms = base_dev = None
            for fusion in dict.fromkeys(["none", *fusions]):
                if progress is not None:
                    progress(f"step {fusion} {mode} {patch}^3")
                call = make_step_call(
                    fusion, patch, backbone=backbone, batch=batch, device=device,
                    backend=backend, mode=mode,
                )  # fmt: skip
                ms = time_call(call, device=device, warmup=warmup, repeats=repeats)
                dev = device_time_call(call, repeats=repeats) if device.startswith("cuda") else None
                del call
                if fusion == "none":
                    base_ms, base_dev = ms, dev
                rows.append(
                    StepRow(
                        backbone=backbone,
                        fusion=fusion,
                        patch=patch,
                        batch=batch,
                        mode=mode,
                        median_ms=ms,
                        overhead=(ms / base_ms - 1) if base_ms and fusion != "none" else None,
                        device_ms=dev,
                        device_overhead=(dev / base_dev - 1)
                        if base_dev and dev and fusion != "none"
                        else None,
                    )
                )
    return rows
