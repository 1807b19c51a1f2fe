"""``fdseg bench`` on the CPU: table, JSON rows, clear errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fdseg_cli.main import cli

pytestmark = pytest.mark.slow  # trains, exports or launches processes


def test_bench_writes_json_rows_for_every_backend_and_the_paper(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "--shape",
            "1x1x20x20x4",
            "--op",
            "split",
            "--op",
            "fuse+bwd",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--no-progress",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
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


def test_bench_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    result = CliRunner().invoke(cli, ["bench", "--backend", "triton", "--device", "cpu"])
    assert result.exit_code == 2
    assert "not available on cpu" in result.output


def test_bench_reference_layout_times_torch_and_matmul_rows(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "bench.json"
    args = ["bench", "--shape", "1x1x20x20x4", "--op", "split+bwd", "--layout", "reference"]
    args += ["--repeats", "1", "--warmup", "0", "--no-progress", "--json", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert {r["backend"] for r in rows} == {"torch", "paper", "matmul"}
    assert all(r["layout"] == "reference" for r in rows)
    assert "layout: reference" in result.output


def test_bench_refuses_triton_for_the_reference_layout(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    args = ["bench", "--backend", "triton", "--device", "cpu", "--layout", "reference"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "for layout 'reference'" in result.output


def test_bench_compiled_rows_and_the_training_step_overhead_table(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "bench.json"
    args = ["bench", "--shape", "1x1x20x20x4", "--op", "split", "--backend", "matmul"]
    args += ["--repeats", "1", "--warmup", "0", "--no-progress", "--json", str(out)]
    result = CliRunner().invoke(cli, [*args, "--mode", "compiled"])
    assert result.exit_code == 0, result.output
    ops = json.loads(out.read_text())
    assert {(r["backend"], r["mode"]) for r in ops} == {
        ("torch", "eager"), ("matmul", "eager"), ("torch", "compiled"), ("matmul", "compiled")
    }  # fmt: skip
    result = CliRunner().invoke(cli, [*args, "--train-step", "16"])
    assert result.exit_code == 0, result.output
    steps = [r for r in json.loads(out.read_text()) if r.get("kind") == "train_step"]
    assert [(r["fusion"], r["patch"]) for r in steps] == [("none", 16), ("early", 16), ("late", 16)]
    assert steps[0]["overhead"] is None and all(r["median_ms"] > 0 for r in steps)
    assert steps[1]["overhead"] == pytest.approx(steps[1]["median_ms"] / steps[0]["median_ms"] - 1)
    assert "overhead vs fusion none" in result.output


def test_bench_cuda_graph_mode_needs_a_gpu():
    result = CliRunner().invoke(cli, ["bench", "--device", "cpu", "--mode", "cuda-graph"])
    assert result.exit_code == 2 and "cuda-graph needs --device cuda" in result.output
