"""Training-step overhead of frequency disentanglement on a GPU (skipped without CUDA).

unet3d, batch 2, AdamW, Dice + cross-entropy, float32, at patches of 64^3 and 128^3,
fusion none / early / late, eager and compiled (``torch.compile``) and with CUDA
graphs (``mode="reduce-overhead"``). The overhead is the ratio to ``none`` of the same
size and mode measured in the same run; ``extra_info["device_ms"]`` holds the GPU busy
time per step, the regression metric (``kernels/README.md``).
"""

from __future__ import annotations

import pytest
import torch

from fdseg_core.benchmark import device_time_call, make_step_call

pytestmark = pytest.mark.gpu

_BASE: dict[tuple[int, str], float] = {}


@pytest.mark.parametrize("mode", ["eager", "compiled", "cuda-graph"])
@pytest.mark.parametrize("fusion", ["none", "early", "late"])
@pytest.mark.parametrize("patch", [64, 128])
def test_training_step_overhead_gpu(benchmark, patch, fusion, mode):
    benchmark.group = f"cuda train step unet3d 2x1x{patch}^3 {mode}"
    step = make_step_call(fusion, patch, device="cuda", mode=mode)

    def run():
        step()
        torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=10, warmup_rounds=3, iterations=1)
    device_ms = device_time_call(step, repeats=5)
    benchmark.extra_info.update(device=torch.cuda.get_device_name(), device_ms=device_ms)
    if fusion == "none":
        _BASE[(patch, mode)] = device_ms
    elif (patch, mode) in _BASE:
        benchmark.extra_info["device_overhead_vs_none"] = device_ms / _BASE[(patch, mode)] - 1
