"""GPU benchmarks of the band operators (skipped without CUDA).

Measures the triton backend beside matmul, torch.fft and the paper's pipeline
on CUDA tensors, with CUDA-event timing via ``fdseg_core.benchmark.time_call``.
"""

from __future__ import annotations

import pytest
import torch

from fdseg_core.benchmark import PAPER, cuda_graph_call, device_time_call, make_call

pytestmark = pytest.mark.gpu

SHAPES = {"1x1x160x160x128": (1, 1, 160, 160, 128), "2x8x160x160x128": (2, 8, 160, 160, 128)}


def _sync_call(call):
    def run():
        call()
        torch.cuda.synchronize()

    return run


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("backend", [PAPER, "torch", "matmul", "triton"])
@pytest.mark.parametrize("op", ["split", "split+bwd", "fuse", "fuse+bwd"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_band_ops_gpu(benchmark, record_median, shape, op, backend, dtype):
    if dtype != "float32" and backend in (PAPER, "torch"):
        pytest.skip("torch.fft has no bfloat16 kernels: only the matmul and triton backends")
    benchmark.group = f"cuda {op} {shape} {dtype}"
    benchmark.extra_info.update(device=torch.cuda.get_device_name())
    call = make_call(op, backend, SHAPES[shape], getattr(torch, dtype), "cuda")
    benchmark.pedantic(_sync_call(call), rounds=20, warmup_rounds=3, iterations=1)
    # GPU busy time (the kernels alone): stable where the wall time is host-bound
    benchmark.extra_info["device_ms"] = device_time_call(call, repeats=5)
    if dtype == "float32":
        record_median(("cuda", shape, op, backend), benchmark)


@pytest.mark.parametrize("mode", ["compiled", "cuda-graph"])
@pytest.mark.parametrize("backend", ["matmul", "triton"])
@pytest.mark.parametrize("op", ["split", "split+bwd", "fuse", "fuse+bwd"])
def test_band_ops_gpu_without_host_overhead(benchmark, record_median, op, backend, mode):
    """The target shape through torch.compile, and replayed from a CUDA graph (no Python
    per call): the wall time the kernels reach once the host is out of the way."""
    shape = "2x8x160x160x128"
    benchmark.group = f"cuda {op} {shape} float32 {mode}"
    benchmark.extra_info.update(device=torch.cuda.get_device_name(), mode=mode)
    call = make_call(op, backend, SHAPES[shape], torch.float32, "cuda", mode=mode)
    benchmark.pedantic(_sync_call(call), rounds=20, warmup_rounds=3, iterations=1)
    benchmark.extra_info["device_ms"] = device_time_call(call, repeats=5)
    record_median(("cuda-" + mode, shape, op, backend), benchmark)


@pytest.mark.parametrize("mode", ["eager", "cuda-graph"])
@pytest.mark.parametrize("impl", ["per_axis", "fused"])
@pytest.mark.parametrize("op", ["split", "fuse"])
def test_triton_kernel_designs_gpu(benchmark, op, impl, mode):
    """The four-launch per-axis kernels against the two-pass fused ones (3.42 X vs 3.02 X
    bytes): GPU busy time, and the wall time eagerly and replayed from a CUDA graph (no
    host time per call), which is what decides ``impl``'s default."""
    from fdseg_kernels.band_fuse import band_fuse_forward
    from fdseg_kernels.band_split import band_split_forward

    x = torch.randn(2, 8, 160, 160, 128, device="cuda")
    low = torch.randn(2, 8, 16, 16, 128, device="cuda")
    if op == "split":

        def call():
            band_split_forward(x, (2, 3), (16, 16), impl=impl)
    else:

        def call():
            band_fuse_forward(low, x, (2, 3), (16, 16), impl=impl)

    if mode == "cuda-graph":
        call = cuda_graph_call(call)
    benchmark.group = f"cuda triton design {op} 2x8x160x160x128 {mode}"
    benchmark.extra_info.update(device=torch.cuda.get_device_name(), impl=impl, mode=mode)
    benchmark.pedantic(_sync_call(call), rounds=20, warmup_rounds=3, iterations=1)
    benchmark.extra_info["device_ms"] = device_time_call(call, repeats=10)
