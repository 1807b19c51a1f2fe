"""ONNX export: the file matches PyTorch on inputs of several sizes, carries its metadata,
predicts the same label maps through ONNX Runtime, and names the layer it cannot export."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("onnx", reason="ONNX export is the onnx extra (pip install 'fdseg[onnx]')")
pytest.importorskip("onnxscript", reason="ONNX export is the onnx extra")
ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is the onnx extra")

from fdseg_cli.main import cli  # noqa: E402
from fdseg_core import BackboneSpec, FrequencyDisentangledNet  # noqa: E402
from fdseg_core.export import METADATA_KEY, OnnxModel, export_onnx  # noqa: E402
from fdseg_core.train import load_model  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning"),
]  # trains or exports models

SMALL = {"base_filters": 4, "levels": 3}


def _conv_then(layer: type[torch.nn.Module], *, attr: str, size_divisor: int = 1) -> BackboneSpec:
    """A backbone spec: a 3x3x3 convolution, then ``layer()`` stored as ``attr``."""

    class Net(torch.nn.Module):
        def __init__(self, cin, cout, dims):
            super().__init__()
            self.conv = torch.nn.Conv3d(cin, cout, 3, padding=1)
            setattr(self, attr, layer())

        def forward(self, x):
            return getattr(self, attr)(self.conv(x))

    builder = lambda i, o, d: Net(i, o, d)  # noqa: E731
    return BackboneSpec(name=attr, builder=builder, size_divisor=size_divisor).validate()


@pytest.mark.parametrize(
    ("backbone", "layout", "options"),
    [("unet3d", "centered", SMALL), ("paper_unet3d", "reference", {"base_filters": 4})],
    ids=["unet3d-centered", "paper-reference"],
)
@pytest.mark.parametrize("fusion", ["none", "early", "late"])
def test_exported_model_matches_pytorch_on_two_sizes(tmp_path, backbone, layout, options, fusion):
    torch.manual_seed(0)
    net = FrequencyDisentangledNet(
        backbone, 1, 3, fusion=fusion, beta=0.25, layout=layout, backend="torch", **options
    ).eval()
    result = export_onnx(net, tmp_path / "m.onnx", example_shape=(1, 1, 16, 16, 8))
    assert result.dynamic_spatial and result.note is None
    assert result.max_abs_error is not None and result.max_abs_error < 1e-4
    assert net.backend == "torch"  # exported as matmuls, the model itself untouched
    model = OnnxModel(result.path)
    for shape in [(1, 1, 16, 16, 8), (3, 1, 24, 32, 16)]:
        x = torch.randn(shape)
        with torch.no_grad():
            want = net(x)
        got = model(x)
        assert got.shape == want.shape
        assert float((got - want).abs().max()) < 1e-4, shape


def test_band_operators_are_matmuls_in_the_graph(tmp_path):
    import onnx

    net = FrequencyDisentangledNet("unet3d", 1, 2, fusion="early", beta=0.25, **SMALL).eval()
    export_onnx(net, tmp_path / "m.onnx", example_shape=(1, 1, 16, 16, 8), check=False)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "DFT" not in ops and not any("fft" in o.lower() for o in ops)
    assert {"MatMul", "Cos", "Range"} <= ops  # band matrices built from the input's shape


def test_an_example_at_the_size_divisor_still_exports_dynamic_sizes(tmp_path):
    def build(cin, cout, dims):
        return torch.nn.Sequential(
            torch.nn.Conv3d(cin, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, cout, 1)
        )

    spec = BackboneSpec(name="convs", builder=build, size_divisor=8).validate()
    net = FrequencyDisentangledNet(spec, 1, 2, fusion="none").eval()
    result = export_onnx(net, tmp_path / "m.onnx", example_shape=(1, 1, 8, 8, 8))
    assert result.dynamic_spatial and result.note is None  # a size of 1 x divisor is not fixed
    x = torch.randn(2, 1, 24, 16, 8)
    with torch.no_grad():
        want = net(x)
    torch.testing.assert_close(OnnxModel(result.path)(x), want, atol=1e-4, rtol=0)


def test_static_export_takes_only_its_size_and_says_so(tmp_path):
    net = FrequencyDisentangledNet("unet3d", 1, 2, fusion="late", beta=0.25, **SMALL).eval()
    result = export_onnx(
        net, tmp_path / "m.onnx", example_shape=(2, 1, 16, 16, 8), dynamic_spatial=False
    )
    assert not result.dynamic_spatial
    model = OnnxModel(result.path)
    assert model(torch.randn(5, 1, 16, 16, 8)).shape == (5, 2, 16, 16, 8)  # batch stays dynamic
    with pytest.raises(ValueError, match=r"spatial size \(16, 16, 8\) \(fixed at export\)"):
        model(torch.randn(1, 1, 24, 16, 8))


@pytest.mark.parametrize("fusion", ["none", "early"])
def test_a_size_baked_into_the_dynamic_graph_falls_back_to_a_fixed_size(tmp_path, fusion):
    class Baked(torch.nn.Module):
        """Divides by the last spatial size; under export the traced size is baked in as a
        constant without torch.export noticing, as a windowed transformer's window count
        is (MONAI's SwinUNETR)."""

        def forward(self, x):
            return x / (16 if torch.compiler.is_exporting() else x.shape[-1])

    spec = _conv_then(Baked, attr="baked", size_divisor=8)
    # early fusion: the static re-export builds band matrices under the tracer, and the
    # final check then runs the model eagerly (a fake matrix left in a cache would fail it)
    net = FrequencyDisentangledNet(spec, 1, 2, fusion=fusion, beta=0.25).eval()
    result = export_onnx(net, tmp_path / "m.onnx", example_shape=(1, 1, 16, 16, 16))
    assert not result.dynamic_spatial
    assert "size fixed at 16x16x16: the dynamic graph failed at another size" in result.note
    assert "24x24x24: relative difference" in result.note
    assert result.max_abs_error < 1e-5
    assert OnnxModel(result.path).meta["dynamic_spatial"] is False
    with pytest.raises(ValueError, match="fixed at export"):
        OnnxModel(result.path)(torch.randn(1, 1, 24, 24, 24))


def test_inputs_off_the_divisor_are_padded_like_the_model_does(tmp_path):
    net = FrequencyDisentangledNet("unet3d", 1, 2, fusion="early", beta=0.25, **SMALL).eval()
    export_onnx(net, tmp_path / "m.onnx", example_shape=(1, 1, 16, 16, 8), check=False)
    x = torch.randn(1, 1, 19, 21, 9)
    with torch.no_grad():
        want = net(x)
    torch.testing.assert_close(OnnxModel(tmp_path / "m.onnx")(x), want, atol=1e-4, rtol=0)


def test_a_layer_without_onnx_translation_is_named(tmp_path):
    class Sorter(torch.nn.Module):
        def forward(self, x):
            return torch.cummax(x, dim=2).values

    spec = _conv_then(Sorter, attr="odd")
    net = FrequencyDisentangledNet(spec, 1, 2, fusion="none")
    with pytest.raises(ValueError, match=r"layer 'backbone.odd' \(Sorter\) uses aten.cummax"):
        export_onnx(net, tmp_path / "m.onnx", example_shape=(1, 1, 8, 8, 8))
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cli_export_then_predict_with_onnx_gives_the_checkpoints_label_maps(tmp_path):
    from fdseg_core.phantom import PhantomConfig, write_phantom_dataset

    ds = write_phantom_dataset(
        tmp_path / "ds",
        n_train=3,
        n_test=1,
        seed=0,
        config=PhantomConfig(shape=(40, 40, 32), spacing=4.0),
        progress=False,
    )
    run = tmp_path / "run"
    args = ["train", str(ds), "--out", str(run), "--fusion", "late", "--epochs", "2"]
    args += ["--iters-per-epoch", "2", "--patch-size", "32", "32", "16", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    model_path = tmp_path / "model.onnx"
    r = CliRunner().invoke(cli, ["export", str(run / "best.pt"), "--out", str(model_path)])
    assert r.exit_code == 0, r.output
    divisor = int(load_model(run / "best.pt")[0].size_divisor)  # the trained backbone's
    assert "max |difference|" in r.output and f"any multiple of {divisor}" in r.output
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    meta = json.loads(sess.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert meta["classes"] == {"background": 0, "red_nucleus": 1, "dentate_nucleus": 2}
    assert meta["patch_size"] == [32, 32, 16] and meta["spacing"] == [4.0, 4.0, 4.0]
    assert meta["normalization"] == ["qsm"] and meta["beta"] == 0.1
    assert meta["layout"] == "centered" and meta["fusion"] == "late"
    from fdseg_core import __version__

    assert meta["fdseg_version"] == __version__
    outputs = {}
    for name, extra in [("torch", [str(run / "best.pt")]), ("onnx", ["--onnx", str(model_path)])]:
        out = tmp_path / f"pred-{name}"
        r = CliRunner().invoke(
            cli, ["predict", *extra, str(ds / "imagesTs"), "--out", str(out), "--no-progress"]
        )
        assert r.exit_code == 0, r.output
        (path,) = sorted(out.glob("*.nii.gz"))
        outputs[name] = nib.load(path)
    a, b = (np.asarray(outputs[k].dataobj) for k in ("torch", "onnx"))
    # logits that differ by float32 rounding (~1e-6) may flip a voxel on the decision
    # boundary of a model trained 4 steps; which ones depends on the CPU
    assert (a != b).mean() < 1e-3 and a.any()
    np.testing.assert_allclose(outputs["torch"].affine, outputs["onnx"].affine)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "nothere.pt", "--out", "m.onnx"], "nothere.pt does not exist"),
        (["export", "x.pt", "--out", "m.txt"], "expected a file name ending in .onnx"),
        (["predict", "--onnx", "nothere.onnx", "img.nii.gz", "--out", "p"], "does not exist"),
        (["predict", "only_one_arg", "--out", "p"], "expected CHECKPOINT INPUTS"),
    ],
    ids=["missing-checkpoint", "bad-suffix", "missing-onnx", "no-inputs"],
)
def test_export_and_predict_input_errors_exit_2_with_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_export_says_nothing_about_torchvision_or_torchs_own_deprecations(tmp_path, caplog):
    import logging
    import warnings

    net = FrequencyDisentangledNet("unet3d", 1, 2, fusion="early", beta=0.25, **SMALL).eval()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        export_onnx(net, tmp_path / "m.onnx", example_shape=(1, 1, 16, 16, 8), check=False)
    assert not [r for r in caplog.records if "torchvision" in r.getMessage()]
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    assert (tmp_path / "m.onnx").stat().st_size > 0


def test_export_runs_the_bands_on_matmuls_with_the_default_kernel_design_and_restores_them():
    from fdseg_core.export.onnx import _matmul_bands

    net = FrequencyDisentangledNet("unet3d", 1, 2, backend="triton", kernel="fused", levels=2)
    with _matmul_bands(net):
        assert (net.backend, net.kernel) == ("matmul", "per_axis")
        net(torch.randn(1, 1, 20, 20, 8))  # the matmul backend accepts the pair
    assert (net.backend, net.kernel) == ("triton", "fused")
