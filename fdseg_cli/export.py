"""``fdseg export``: a trained checkpoint as one ONNX file, band operators included."""

from __future__ import annotations

from pathlib import Path

import click

from fdseg_cli.options import out_option, shape_option, switch_option

__all__ = ["export"]


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@out_option("The .onnx file to write (or --bundle).", folder=False, required=False)
@click.option(
    "--dynamic/--static",
    default=True,
    show_default=True,
    help="Dynamic spatial sizes (multiples of the backbone's divisor, band matrices "
    "built in the graph), or fixed at --shape.",
)
@shape_option("Spatial size to trace with [default: the checkpoint's patch size].")
@switch_option(
    "check",
    default=True,
    help="Run the file with ONNX Runtime and report its largest difference to PyTorch.",
)
@click.option(
    "--bundle",
    type=click.Path(file_okay=False),
    default=None,
    help="Write a MONAI bundle into this new folder instead (configs/metadata.json, "
    "configs/inference.json that `python -m monai.bundle run` runs with fdseg's network "
    "and sliding window, models/model.pt and model.onnx, a model-card README); needs the "
    "monai extra.",
)
@click.option(
    "--licence",
    default="see the licence of the training data",
    show_default=True,
    help="The bundle's licence and copyright line.",
)
def export(checkpoint, out, dynamic, shape, check, bundle, licence):
    """Export the model of CHECKPOINT (best.pt or last.pt of `fdseg train`) to ONNX, with
    its classes, normalisation, spacing, patch size and band parameters as metadata.
    Run it with `fdseg predict --onnx OUT ...` or any ONNX runtime. With --bundle, a MONAI
    bundle that MONAI's own bundle runner executes."""
    from fdseg_core.atomic import check_output_file  # lazy: `--help` stays fast
    from fdseg_core.export import export_checkpoint  # lazy: torch; `--help` stays fast

    if bundle is not None:
        if out is not None:
            raise click.UsageError("--out and --bundle exclude each other")
        from fdseg_core.export.bundle import export_bundle  # lazy: torch, monai

        check_output_file(Path(bundle) / "configs" / "metadata.json")
        folder = export_bundle(checkpoint, bundle, licence=licence)
        click.echo(
            f"wrote the MONAI bundle {folder}: python -m monai.bundle run --config_file "
            f"{folder}/configs/inference.json --bundle_root {folder} --dataset_dir IMAGES "
            "--output_dir OUT"
        )
        return
    if out is None:
        raise click.UsageError("give --out FILE.onnx (or --bundle DIR)")

    if not out.endswith(".onnx"):
        raise click.BadParameter(f"{out}: expected a file name ending in .onnx", param_hint="--out")
    if not Path(out).resolve().parent.is_dir():
        raise click.BadParameter(f"the folder of {out} does not exist", param_hint="--out")
    check_output_file(out)  # before the export's work: a folder that cannot be written
    result = export_checkpoint(checkpoint, out, dynamic_spatial=dynamic, spatial=shape, check=check)
    if result.note:
        click.echo(f"note: {result.note}", err=True)
    sizes = (
        f"spatial sizes: any multiple of {result.size_divisor}"
        if result.dynamic_spatial
        else f"spatial size: {'x'.join(map(str, result.example_shape[2:]))} only"
    )
    click.echo(f"wrote {result.path} (batch: dynamic; {sizes})")
    if result.max_abs_error is not None:
        click.echo(
            f"onnxruntime vs PyTorch on a random input: max |difference| {result.max_abs_error:.2e}"
        )
