"""``fdseg bench`` on the CPU: table, JSON rows, clear errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fdseg_cli.main import cli

pytestmark = pytest.mark.slow  # trains, exports or launches processes


def _quick_bench(tmp_path, *options: str):
    """Run ``fdseg bench`` with these options on a 1x1x20x20x4 volume, one repeat without
    warm-up or progress bars; it must succeed. Returns click's result and the JSON rows."""
    out = tmp_path / "bench.json"
    args = ["bench", "--shape", "1x1x20x20x4", *options, "--repeats", "1", "--warmup", "0"]
    result = CliRunner().invoke(cli, [*args, "--no-progress", "--json", str(out)])
    assert result.exit_code == 0, result.output
    return result, json.loads(out.read_text())


def test_bench_writes_json_rows_for_every_backend_and_the_paper(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    result, rows = _quick_bench(tmp_path, "--op", "split", "--op", "fuse+bwd")
    assert {(r["backend"], r["op"]) for r in rows} == {
        (b, o) for b in ("torch", "paper", "matmul") for o in ("split", "fuse+bwd")
    }
    for r in rows:
        assert {
            "backend",
            "op",
            "shape",
            "dtype",
            "median_ms",
            "gbps",
            "speedup",
            "device_name",
            "torch",
            "triton",
        } <= set(r)
        assert r["shape"] == [1, 1, 20, 20, 4] and r["dtype"] == "float32"
        assert r["median_ms"] > 0 and r["gbps"] > 0
    torch_rows = [r for r in rows if r["backend"] == "torch"]
    assert all(r["speedup"] == pytest.approx(1.0) for r in torch_rows)
    assert "matmul" in result.output and "vs torch" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shape", "2x8x160"], "expected N x C x X x Y x Z"),
        (["--shape", "axb"], "is not a shape"),
        (["--backend", "cufft"], "unknown backend 'cufft'"),
        (["--shape", "1x1x4x4x4"], "keeps no sample at beta=0.1"),
    ],
    ids=["short-shape", "not-a-shape", "unknown-backend", "too-small"],
)
def test_bench_bad_input_exits_2_with_one_line(args, message):
    result = CliRunner().invoke(cli, ["bench", *args, "--no-progress"])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("interpreter", "args", "message"),
    [
        (None, ["--backend", "triton", "--device", "cpu"], "not available on cpu"),
        (
            "1",
            ["--backend", "triton", "--device", "cpu", "--layout", "reference"],
            "for layout 'reference'",
        ),
        (None, ["--device", "cpu", "--mode", "cuda-graph"], "cuda-graph needs --device cuda"),
    ],
    ids=["triton-on-cpu-without-interpreter", "triton-for-the-reference-layout", "cuda-graph"],
)
def test_bench_refuses_what_it_cannot_run_there(monkeypatch, interpreter, args, message):
    if interpreter is None:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    else:
        monkeypatch.setenv("TRITON_INTERPRET", interpreter)
    result = CliRunner().invoke(cli, ["bench", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_bench_reference_layout_times_torch_and_matmul_rows(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    result, rows = _quick_bench(tmp_path, "--op", "split+bwd", "--layout", "reference")
    assert {r["backend"] for r in rows} == {"torch", "paper", "matmul"}
    assert all(r["layout"] == "reference" for r in rows)
    assert "layout: reference" in result.output


def test_bench_compiled_rows_and_the_training_step_overhead_table(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    matmul_split = ("--op", "split", "--backend", "matmul")
    _, ops = _quick_bench(tmp_path, *matmul_split, "--mode", "compiled")
    assert {(r["backend"], r["mode"]) for r in ops} == {
        ("torch", "eager"), ("matmul", "eager"), ("torch", "compiled"), ("matmul", "compiled")
    }  # fmt: skip
    result, rows = _quick_bench(tmp_path, *matmul_split, "--train-step", "16")
    steps = [r for r in rows if r.get("kind") == "train_step"]
    assert [(r["fusion"], r["patch"]) for r in steps] == [("none", 16), ("early", 16), ("late", 16)]
    assert steps[0]["overhead"] is None and all(r["median_ms"] > 0 for r in steps)
    assert steps[1]["overhead"] == pytest.approx(steps[1]["median_ms"] / steps[0]["median_ms"] - 1)
    assert "overhead vs fusion none" in result.output
