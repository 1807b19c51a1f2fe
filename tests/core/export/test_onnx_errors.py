"""A missing part of the ``onnx`` extra is a one-line ValueError (exit code 2 in the CLI),
whichever part it is: onnxruntime checks the exported file, so it is needed too."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.export import export_checkpoint, export_onnx, onnx_available


@pytest.fixture
def missing(monkeypatch):
    """``missing(*names)``: make ``importlib.util.find_spec`` report those modules absent."""
    real = importlib.util.find_spec

    def hide(*names: str) -> None:
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a, **k: None if name in names else real(name, *a, **k),
        )

    return hide


def test_onnx_available_reports_a_missing_onnxruntime(missing):
    missing("onnxruntime")
    reason = onnx_available()
    assert reason is not None and "\n" not in reason
    assert reason.startswith("ONNX export needs onnxruntime:")
    assert "pip install 'fdseg[onnx]'" in reason


def test_onnx_available_names_every_missing_module(missing):
    missing("onnx", "onnxruntime")
    assert onnx_available().startswith("ONNX export needs onnx and onnxruntime:")


def test_export_without_onnxruntime_raises_the_documented_value_error(tmp_path, missing):
    missing("onnxruntime")
    model = torch.nn.Conv3d(1, 2, 1)
    with pytest.raises(ValueError, match=r"ONNX export needs onnxruntime: pip install"):
        export_onnx(model, tmp_path / "m.onnx", example_shape=(1, 1, 8, 8, 8))
    assert not list(tmp_path.iterdir())  # nothing written, no temp file left
    with pytest.raises(ValueError, match=r"ONNX export needs onnxruntime"):
        export_checkpoint(tmp_path / "nothere.pt", tmp_path / "m.onnx")


def test_cli_export_without_onnxruntime_exits_2_with_one_line(tmp_path, monkeypatch, missing):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "best.pt").write_bytes(b"not read: the extra is checked first")
    missing("onnxruntime")
    r = CliRunner().invoke(cli, ["export", "best.pt", "--out", "m.onnx"])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    assert "ONNX export needs onnxruntime" in lines[0] and "Traceback" not in r.output
    assert not (tmp_path / "m.onnx").exists()
