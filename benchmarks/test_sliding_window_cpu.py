"""Sliding-window inference of one 80 x 80 x 64 volume: windows per forward pass, 1 against 2 and 4.

The validation of a training run and ``fdseg predict`` tile a volume into windows; this
suite times ``sliding_window_inference`` with the default network (``unet3d``, fusion
``none``, 3 classes) at one thread (how two single-threaded runs share a 2-core machine,
``benchmarks/README.md``, "Parallel runs") and at the process's default thread count,
for the two window shapes of issue 27's ablation: 48 x 48 x 32 (27 windows at overlap
0.5) and 64^3 (4 windows). The peer is batch 1, measured in the same run; every batch
size must give batch 1's probabilities (up to float rounding), which the suite checks.

Run: ``pytest benchmarks/test_sliding_window_cpu.py``.
"""

from __future__ import annotations

import pytest
import torch

from fdseg_core import FrequencyDisentangledNet
from fdseg_core.infer import sliding_window_inference

_MEDIANS: dict[tuple, float] = {}
_PROBS: dict[tuple, torch.Tensor] = {}

PATCHES = {"48x48x32": (48, 48, 32), "64x64x64": (64, 64, 64)}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return FrequencyDisentangledNet("unet3d", 1, 3, fusion="none").eval()


@pytest.fixture
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param or before)
    yield torch.get_num_threads()
    torch.set_num_threads(before)


@pytest.mark.parametrize("batch_size", [1, 2, 4])
@pytest.mark.parametrize("patch", list(PATCHES))
@pytest.mark.parametrize("threads", [1, 0], ids=["1-thread", "all-threads"], indirect=True)
def test_sliding_window_80x80x64(benchmark, net, patch, batch_size, threads):
    benchmark.group = f"sliding window 1x1x80x80x64, {patch} windows, {threads} thread(s)"
    volume = torch.randn(1, 1, 80, 80, 64, generator=torch.Generator().manual_seed(1))

    def run():
        return sliding_window_inference(volume, net, PATCHES[patch], batch_size=batch_size)

    probs = benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    key = (patch, threads)
    if batch_size == 1:
        _PROBS[key] = probs
    else:  # the same result: only the time may change
        torch.testing.assert_close(probs, _PROBS[key], atol=1e-5, rtol=1e-5)
    _MEDIANS[(*key, batch_size)] = benchmark.stats.stats.median
    benchmark.extra_info.update(threads=threads, batch_size=batch_size)
    peer = _MEDIANS.get((*key, 1))
    if batch_size > 1 and peer:
        speedup = peer / _MEDIANS[(*key, batch_size)]
        benchmark.extra_info["speedup_vs_batch_1"] = speedup
        print(
            f"\n{patch}, {threads} thread(s): batch 1 {peer:.2f} s, batch {batch_size} "
            f"{_MEDIANS[(*key, batch_size)]:.2f} s ({speedup:.2f}x)"
        )
