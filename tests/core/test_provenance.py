"""What a result records of the machine that made it."""

from __future__ import annotations

import builtins
import platform
import re
from pathlib import Path

import pytest
import torch

from fdseg_core import provenance
from fdseg_core.provenance import CPU_FEATURES, machine_provenance


@pytest.fixture
def uncached():
    provenance._cpu_model.cache_clear()
    provenance._cpu_features.cache_clear()
    yield
    provenance._cpu_model.cache_clear()
    provenance._cpu_features.cache_clear()


def test_the_machine_is_what_torch_and_the_cpu_report(uncached):
    machine = machine_provenance("cpu")
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["cpu_threads"] == torch.get_num_threads()
    assert machine["torch_version"] == torch.__version__
    assert machine["python_version"] == platform.python_version()
    assert machine["device"] == "cpu"
    assert machine["cuda_device"] is machine["cuda_version"] is machine["cudnn_version"] is None
    assert machine_provenance() == machine  # no device: the CPU


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads /proc/cpuinfo")
def test_the_cpu_features_are_the_flags_the_kernels_choose_between(uncached):
    text = Path("/proc/cpuinfo").read_text()
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.MULTILINE).group(1).split())
    model = re.search(r"^model name\s*:(.*)$", text, re.MULTILINE)
    machine = machine_provenance("cpu")
    assert machine["cpu_features"] == [f for f in CPU_FEATURES if f in flags]
    assert machine["cpu"] == (model.group(1).strip() if model else platform.processor() or None)


def test_without_proc_cpuinfo_the_cpu_is_what_platform_knows(uncached, monkeypatch):
    real_open = builtins.open

    def no_cpuinfo(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    machine = machine_provenance("cpu")
    assert machine["cpu"] == "arm" and machine["cpu_features"] == []


def test_two_threads_settings_are_two_machines(uncached):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = machine_provenance("cpu")
        torch.set_num_threads(2)
        two = machine_provenance("cpu")
    finally:
        torch.set_num_threads(before)
    assert (one["cpu_threads"], two["cpu_threads"]) == (1, 2) and one != two
