"""``fdseg predict``: segment images with a trained checkpoint."""

from __future__ import annotations

import click

from fdseg_cli.options import count_option, device_option, progress_option

__all__ = ["predict"]


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[CHECKPOINT] INPUTS...")
@click.option(
    "--onnx",
    "onnx_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Predict with this ONNX file (from `fdseg export`) in ONNX Runtime instead of a "
    "checkpoint; then every argument is an input.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Folder for the predicted label maps.",
)
@click.option(
    "--overlap",
    type=click.FloatRange(0.0, 0.95),
    default=0.5,
    show_default=True,
    help="Overlap of neighbouring sliding windows.",
)
@click.option(
    "--tta/--no-tta",
    default=False,
    show_default=True,
    help="Flip test-time augmentation (8 flips in 3D).",
)
@click.option("--save-probabilities", is_flag=True, help="Also write class probability maps.")
@click.option("--overlay", is_flag=True, help="Also write PNG overlays in OUT/overlays.")
@device_option
@count_option("--batch-size", default=1, help="Windows per forward pass.")
@progress_option
def predict(
    args, onnx_path, out, overlap, tta, save_probabilities, overlay, device, batch_size, progress
):
    """Segment INPUTS (NIfTI files, folders, or a dataset root: its imagesTs) with
    CHECKPOINT (best.pt or last.pt of `fdseg train`), or with the ONNX file of
    `--onnx` (then no CHECKPOINT). Label maps are written as OUT/{case}.nii.gz on each
    input's grid, with its affine and header; the same pipeline serves both."""
    from fdseg_core.infer import gather_inputs, predict_cases
    from fdseg_core.train import load_model, resolve_device

    if onnx_path is not None:
        from fdseg_core.export import OnnxModel

        if device == "cuda":
            raise click.BadParameter(
                "ONNX models run on the CPU provider here", param_hint="--device"
            )
        model = OnnxModel(onnx_path)
        meta = model.info()
        dev = resolve_device("cpu")
        inputs = args
    else:
        if len(args) < 2:
            raise click.UsageError("expected CHECKPOINT INPUTS... (or --onnx MODEL INPUTS...)")
        dev = resolve_device(device)
        model, meta = load_model(args[0], map_location=dev)
        inputs = args[1:]
    cases = gather_inputs(inputs, meta["in_channels"])
    written = predict_cases(
        model,
        meta,
        cases,
        out,
        overlap=overlap,
        tta=tta,
        save_probabilities=save_probabilities,
        overlay=overlay,
        device=dev,
        batch_size=batch_size,
        progress=progress,
    )
    click.echo(f"wrote {len(written)} segmentation(s) to {out}")
