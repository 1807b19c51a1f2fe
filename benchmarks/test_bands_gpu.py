"""GPU benchmarks of the band operators (skipped without CUDA).

Measures the triton backend beside matmul, torch.fft and the paper's pipeline
on CUDA tensors, with CUDA-event timing via ``fdseg_core.benchmark.time_call``.
"""

from __future__ import annotations

import pytest
import torch

from fdseg_core.benchmark import PAPER, device_time_call, make_call

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
