"""CPU benchmarks of band_split / band_fuse: every backend against the paper's pipeline.

Run: ``pytest benchmarks -m "not gpu"`` (see benchmarks/README.md for the regression
workflow). Shapes are the paper's input (1x1x160x160x128) and a feature map of
its early-fusion stem at batch 2 (2x8x160x160x128), float32.
"""

from __future__ import annotations

import pytest
import torch

from fdseg_core.benchmark import PAPER, make_call, peak_rss_growth

SHAPES = {"1x1x160x160x128": (1, 1, 160, 160, 128), "2x8x160x160x128": (2, 8, 160, 160, 128)}
BACKENDS = [PAPER, "torch", "matmul"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["split", "split+bwd", "fuse", "fuse+bwd"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_band_ops_cpu(benchmark, record_median, shape, op, backend):
    benchmark.group = f"cpu {op} {shape}"
    benchmark.extra_info.update(device="cpu", threads=torch.get_num_threads())
    call = make_call(op, backend, SHAPES[shape], torch.float32, "cpu")
    rounds = 3 if shape.startswith("2x8") else 7
    benchmark.pedantic(call, rounds=rounds, warmup_rounds=1, iterations=1)
    record_median(("cpu", shape, op, backend), benchmark)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["split", "fuse"])
def test_peak_memory_growth(record_memory, op, backend):
    shape = SHAPES["2x8x160x160x128"]
    growth = peak_rss_growth(op, backend, shape)
    record_memory(("2x8x160x160x128", op, backend), growth)
    assert growth >= 0


@pytest.mark.parametrize("backend", ["torch", "matmul"])
@pytest.mark.parametrize("op", ["split", "split+bwd", "fuse", "fuse+bwd"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_reference_layout_cpu(benchmark, record_median, shape, op, backend):
    """The paper code's unshifted box (layout="reference"): torch.fft vs matmul."""
    benchmark.group = f"cpu reference {op} {shape}"
    benchmark.extra_info.update(device="cpu", threads=torch.get_num_threads(), layout="reference")
    call = make_call(op, backend, SHAPES[shape], torch.float32, "cpu", layout="reference")
    rounds = 3 if shape.startswith("2x8") else 7
    benchmark.pedantic(call, rounds=rounds, warmup_rounds=1, iterations=1)
    record_median(("cpu-ref", shape, op, backend), benchmark)
