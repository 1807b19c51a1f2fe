"""Shared fixtures of the benchmark suites: a result collector and a ratio table.

pytest-benchmark times each case; this plugin also keeps every median so that
the session ends with a table of ratios to the peers measured in the same run
(the paper's pipeline and the torch.fft backend), and peak-memory figures.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

_RESULTS: dict[tuple, float] = {}
_MEMORY: dict[tuple, int] = {}

#: Targets of issue 2 (CPU) as (op, minimum speed-up of the fast backend over the paper).
CPU_TARGETS = {"split": 8.0, "fuse+bwd": 6.0}


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (GPU benchmark)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def record_median():
    """Store the median (ms) of a finished benchmark under a key."""

    def record(key: tuple, benchmark) -> None:
        _RESULTS[key] = benchmark.stats.stats.median * 1e3

    return record


@pytest.fixture
def record_memory():
    def record(key: tuple, nbytes: int) -> None:
        _MEMORY[key] = nbytes

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _RESULTS and not _MEMORY:
        return
    tr = terminalreporter
    groups: dict[tuple, dict[str, float]] = defaultdict(dict)
    for (device, shape, op, backend), ms in _RESULTS.items():
        groups[(device, shape, op)][backend] = ms
    tr.section("band operators: median ms and ratios measured in this run")
    tr.write_line(
        f"{'device':6} {'shape':18} {'op':9} {'backend':8} {'ms':>9} "
        f"{'vs paper':>9} {'vs torch':>9}"
    )
    table = []
    for (device, shape, op), per in sorted(groups.items()):
        for backend, ms in sorted(per.items(), key=lambda kv: kv[1]):
            vs_paper = per.get("paper", float("nan")) / ms
            vs_torch = per.get("torch", float("nan")) / ms
            tr.write_line(
                f"{device:6} {shape:18} {op:9} {backend:8} {ms:9.2f} "
                f"{vs_paper:8.1f}x {vs_torch:8.1f}x"
            )
            table.append(
                dict(
                    device=device,
                    shape=shape,
                    op=op,
                    backend=backend,
                    median_ms=ms,
                    speedup_vs_paper=vs_paper,
                    speedup_vs_torch=vs_torch,
                )
            )
        target = CPU_TARGETS.get(op) if device == "cpu" else None
        if target and "matmul" in per and "paper" in per:
            got = per["paper"] / per["matmul"]
            verdict = "meets" if got >= target else "MISSES"
            tr.write_line(
                f"   target: matmul >= {target:.0f}x the paper for {op}: {got:.1f}x {verdict}"
            )
    if _MEMORY:
        tr.section("peak RSS growth while running once (fresh process), x input size")
        for (shape, op, backend), nbytes in sorted(_MEMORY.items()):
            numel = 1
            for s in shape.split("x"):
                numel *= int(s)
            ratio = nbytes / (4 * numel)
            tr.write_line(
                f"{shape:18} {op:9} {backend:8} {nbytes / 2**20:9.1f} MiB {ratio:6.2f}x input"
            )
            table.append(
                dict(
                    shape=shape,
                    op=op,
                    backend=backend,
                    peak_rss_growth=nbytes,
                    ratio_to_input=ratio,
                )
            )
    out = os.environ.get("FDSEG_BENCH_TABLE")
    if out:
        Path(out).write_text(json.dumps(table, indent=1))
