"""fdseg_kernels as a package: lazy imports and the per-call device/interpreter checks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import fdseg_kernels

pytestmark = pytest.mark.triton


def _assert_runs(*lines: str) -> None:
    """Run these lines in a fresh interpreter without TRITON_INTERPRET: it must reach
    their end."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = "\n".join([*lines, "print('ok')"])
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("ON", True), ("yes", True), ("0", False), ("", False)],
)
def test_interpreter_flag_follows_triton_spelling(monkeypatch, value, expected):
    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert fdseg_kernels.interpreter_enabled() is expected


def test_triton_runs_on_reads_environment_at_call_time(monkeypatch):
    if not fdseg_kernels.triton_available():
        pytest.skip("optional 'triton' package not installed")
    assert fdseg_kernels.triton_runs_on(torch.device("cpu"))
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not fdseg_kernels.triton_runs_on(torch.device("cpu"))
    assert fdseg_kernels.triton_runs_on(torch.device("cuda"))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert fdseg_kernels.triton_runs_on("cpu")


def test_package_imports_and_reports_false_without_triton():
    _assert_runs(
        "import sys; sys.modules['triton'] = None",
        "import fdseg_kernels as k",
        "assert not k.triton_available()",
        "assert not k.triton_runs_on('cuda')",
    )


def test_interpreter_switched_on_after_importing_the_kernels():
    """`import triton` and the kernel modules first, TRITON_INTERPRET afterwards: still runs."""
    if not fdseg_kernels.triton_available():
        pytest.skip("optional 'triton' package not installed")
    _assert_runs(
        "import os, torch",
        "import triton, fdseg_kernels.band_split, fdseg_kernels.band_fuse",
        "from fdseg_core.bands import band_split",
        "os.environ['TRITON_INTERPRET'] = '1'",
        "x = torch.randn(1, 2, 12, 10, 5)",
        "low, high = fdseg_kernels.band_split_triton(x, (2, 3), (3, 2))",
        "ref_low, ref_high = band_split(x.double(), 0.25, dims=(2, 3), backend='torch')",
        "assert (low.double() - ref_low).abs().max() < 1e-5",
        "assert (high.double() - ref_high).abs().max() < 1e-5",
    )
