"""Inference of one 160 x 160 x 128 volume: PyTorch eager against ONNX Runtime, in one run.

Two deployments, each in PyTorch and in ONNX Runtime (the file of ``fdseg export``):

* ``unet3d`` with early fusion, patches of 64^3, sliding window (overlap 0.5, 27
  windows, Gaussian weights): fdseg's default;
* ``paper_unet3d`` with late fusion (the paper's layout) on the whole volume in one
  pass: the paper's model.

The same sliding-window driver runs both predictors, so the ratio is the model's.
Run: ``pytest benchmarks/test_inference_onnx_cpu.py`` (needs the ``onnx`` extra).
"""

from __future__ import annotations

import pytest
import torch

from fdseg_core import FrequencyDisentangledNet
from fdseg_core.infer import sliding_window_inference

pytest.importorskip("onnxruntime", reason="needs the onnx extra (pip install 'fdseg[onnx]')")
pytest.importorskip("onnxscript", reason="needs the onnx extra")

_MEDIANS: dict[tuple[str, str], float] = {}

CASES = {
    "unet3d-early-patch64": dict(
        backbone="unet3d", fusion="early", layout="centered", patch=(64, 64, 64)
    ),
    "paper-late-whole": dict(
        backbone="paper_unet3d", fusion="late", layout="reference", patch=(160, 160, 128)
    ),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from fdseg_core.export import OnnxModel, export_onnx

    models = {}
    for name, case in CASES.items():
        torch.manual_seed(0)
        net = FrequencyDisentangledNet(
            case["backbone"], 1, 3, fusion=case["fusion"], layout=case["layout"]
        ).eval()
        path = tmp_path_factory.mktemp("onnx") / f"{name}.onnx"
        export_onnx(net, path, example_shape=(1, 1, *case["patch"]), check=False)
        models[name] = (net, OnnxModel(path))
    return models


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
@pytest.mark.parametrize("case", list(CASES))
def test_volume_inference_160x160x128(benchmark, exported, case, runtime):
    benchmark.group = f"inference 1x1x160x160x128 {case}"
    net, onnx_model = exported[case]
    predictor = net if runtime == "torch" else onnx_model
    volume = torch.randn(1, 1, 160, 160, 128, generator=torch.Generator().manual_seed(1))
    patch = CASES[case]["patch"]

    def run():
        with torch.no_grad():
            return sliding_window_inference(volume, predictor, patch, overlap=0.5)

    probs = benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    assert probs.shape == (1, 3, 160, 160, 128)
    _MEDIANS[(case, runtime)] = benchmark.stats.stats.median
    other = _MEDIANS.get((case, "torch"))
    benchmark.extra_info.update(threads=torch.get_num_threads())
    if runtime == "onnxruntime" and other:
        benchmark.extra_info["speedup_vs_torch"] = other / _MEDIANS[(case, runtime)]
        print(f"\n{case}: torch {other:.2f} s, onnxruntime {_MEDIANS[(case, runtime)]:.2f} s")
