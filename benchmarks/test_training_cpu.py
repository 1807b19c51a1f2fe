"""Training-step throughput and peak memory of unet3d with fusion none / early / late,
and sliding-window inference on a 160 x 160 x 128 volume (issue 4's targets).

The frequency-disentangled overhead is the ratio of the median step time of each
fusion mode to the baseline (``none``) measured in the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from fdseg_core import FrequencyDisentangledNet
from fdseg_core.infer import sliding_window_inference
from fdseg_core.train import DiceCELoss

_STEPS: dict[str, float] = {}


def _step_call(fusion: str):
    torch.manual_seed(0)
    net = FrequencyDisentangledNet("unet3d", 1, 3, fusion=fusion)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss()
    x = torch.randn(2, 1, 64, 64, 64)
    y = torch.randint(0, 3, (2, 64, 64, 64))

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    return step


@pytest.mark.parametrize("fusion", ["none", "early", "late"])
def test_training_step_unet3d_patch64_batch2(benchmark, fusion):
    benchmark.group = "train step unet3d 2x1x64^3"
    step = _step_call(fusion)
    benchmark.pedantic(step, rounds=8, warmup_rounds=2, iterations=1)
    _STEPS[fusion] = benchmark.stats.stats.median
    benchmark.extra_info["iters_per_s"] = 1.0 / benchmark.stats.stats.median
    if fusion != "none" and "none" in _STEPS:
        benchmark.extra_info["overhead_vs_none"] = _STEPS[fusion] / _STEPS["none"] - 1


_PEAK = r"""
import sys, torch
from benchmarks.test_training_cpu import _step_call
torch.set_num_threads(int(sys.argv[2]))
step = _step_call(sys.argv[1])
step()
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
print(hwm())
"""


@pytest.mark.parametrize("fusion", ["none", "early", "late"])
def test_training_peak_memory(benchmark, fusion):
    benchmark.group = "train peak RSS"
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, fusion, str(torch.get_num_threads())],
        capture_output=True,
        text=True,
        check=True,
    )
    peak = int(out.stdout.strip().splitlines()[-1])
    benchmark.extra_info["peak_rss_bytes"] = peak
    benchmark.pedantic(lambda: None, rounds=1)
    print(json.dumps({"fusion": fusion, "peak_rss_mib": peak / 2**20}))


def test_sliding_window_inference_160x160x128(benchmark):
    benchmark.group = "sliding window"
    net = FrequencyDisentangledNet("unet3d", 1, 3, fusion="early").eval()
    volume = torch.randn(1, 1, 160, 160, 128)
    benchmark.pedantic(
        lambda: sliding_window_inference(volume, net, (64, 64, 64), overlap=0.5),
        rounds=2,
        warmup_rounds=0,
        iterations=1,
    )
