"""``fdseg predict``: segment images with a checkpoint, an ensemble, or ONNX files."""

from __future__ import annotations

from pathlib import Path

import click

from fdseg_cli.options import (
    count_option,
    device_option,
    out_option,
    progress_option,
    switch_option,
)
from fdseg_core.choices import DEFAULT_OVERLAP, DEFAULT_WINDOW_BATCH

__all__ = ["predict"]

#: ``--keep-largest`` values: the modes of fdseg_core.infer.postprocess, and "run": the
#: per-class decision a cross-validation recorded (``postprocessing.json``).
KEEP_CHOICES = ("none", "class", "hemisphere", "run")


def _split_models(args: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """Leading checkpoint files (``*.pt``, existing or not: loading names a missing one)
    and run folders, then the inputs."""
    from fdseg_core.train.checkpoint import is_run_folder  # lazy: torch, on use

    models: list[Path] = []
    for i, arg in enumerate(args):
        path = Path(arg)
        if path.suffix == ".pt" or is_run_folder(path):
            models.append(path)
        else:
            return models, list(args[i:])
    return models, []


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[CHECKPOINT|RUN_DIR]... INPUTS...")
@click.option(
    "--onnx",
    "onnx_paths",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Predict with this ONNX file (from `fdseg export`) in ONNX Runtime instead of "
    "checkpoints; repeat it for an ensemble. Then every argument is an input.",
)
@out_option("Folder for the predicted label maps.")
@click.option(
    "--overlap",
    type=click.FloatRange(0.0, 0.95),
    default=DEFAULT_OVERLAP,
    show_default=True,
    help="Overlap of neighbouring sliding windows.",
)
@switch_option(
    "tta",
    default=False,
    help="Flip test-time augmentation along the axes the model saw flipped in training: "
    "every combination of their flips, 8 for a model trained with augmentation, so about "
    "8 times the time of a prediction without it (a line per case says so). A model "
    "trained without augmentation never saw a flipped image: it is not flipped, and one "
    "line says so.",
)
@click.option(
    "--checkpoint",
    "which",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Which checkpoint of each RUN_DIR (or of each of its folds).",
)
@click.option(
    "--keep-largest",
    type=click.Choice(KEEP_CHOICES),
    default="none",
    is_flag=False,
    flag_value="class",
    show_default=True,
    help="Keep the largest connected component of each class (class; a bare "
    "--keep-largest at the end of the command means class), of each class in each "
    "hemisphere (hemisphere, for bilateral labels), or as the run's cross-validation "
    "decided per class (run: RUN_DIR/postprocessing.json).",
)
@click.option("--save-probabilities", is_flag=True, help="Also write class probability maps.")
@click.option("--overlay", is_flag=True, help="Also write PNG overlays in OUT/overlays.")
@device_option
@count_option(
    "--batch-size",
    default=DEFAULT_WINDOW_BATCH,
    help="Windows per forward pass: the time and the memory, not the result.",
)
@progress_option
def predict(
    args,
    onnx_paths,
    out,
    overlap,
    tta,
    which,
    keep_largest,
    save_probabilities,
    overlay,
    device,
    batch_size,
    progress,
):
    """Segment INPUTS (NIfTI files, folders, or a dataset root: its imagesTs).

    The models come first: checkpoints (best.pt or last.pt of `fdseg train`) and run
    folders (every fold of a `fdseg train --folds-all` run), or the ONNX files of
    `--onnx` (then every argument is an input). Several models are an ensemble: their
    probabilities are averaged, softmax or sigmoid as each was trained. Label maps are
    written as OUT/{case}.nii.gz on each input's grid, with its affine and header."""
    # lazy: inference imports torch; `--help` stays instant
    from fdseg_core.infer import gather_inputs, predict_ensemble
    from fdseg_core.train import load_model, resolve_device
    from fdseg_core.train.checkpoint import find_checkpoints

    run_dirs: list[Path] = []
    if onnx_paths:
        from fdseg_core.export import OnnxModel  # the onnx extra: only with --onnx

        if device == "cuda":
            raise click.BadParameter(
                "ONNX models run on the CPU provider here", param_hint="--device"
            )
        dev = resolve_device("cpu")
        members = [(m, m.card()) for m in (OnnxModel(p) for p in onnx_paths)]
        names = list(onnx_paths)
        inputs = list(args)
    else:
        paths, inputs = _split_models(args)
        if not paths or not inputs:
            raise click.UsageError(
                "expected CHECKPOINT INPUTS... (one or more checkpoints or run folders, then "
                "the inputs), or --onnx MODEL INPUTS..."
            )
        run_dirs = [p for p in paths if p.is_dir()]
        files = [f for p in paths for f in (find_checkpoints(p, which) if p.is_dir() else [p])]
        dev = resolve_device(device)
        members = [load_model(f, map_location=dev) for f in files]
        names = [str(f) for f in files]
    modes = _keep_largest(keep_largest, run_dirs)
    cases = gather_inputs(inputs, members[0][1].in_channels)
    written = predict_ensemble(
        members,
        cases,
        out,
        overlap=overlap,
        tta=tta,
        save_probabilities=save_probabilities,
        overlay=overlay,
        device=dev,
        batch_size=batch_size,
        progress=progress,
        keep_largest=modes,
        names=names,
    )
    what = f"an ensemble of {len(members)} models" if len(members) > 1 else "1 model"
    click.echo(f"wrote {len(written)} segmentation(s) to {out} ({what})")


def _keep_largest(choice: str, run_dirs: list[Path]) -> str | dict[int, str]:
    """The post-processing: a mode for every class, or the run's decision per class."""
    if choice != "run":
        return choice
    if len(run_dirs) != 1:
        raise click.BadParameter(
            "'run' needs exactly one RUN_DIR (a `fdseg train --folds-all` folder)",
            param_hint="--keep-largest",
        )
    from fdseg_core.crossval import load_postprocessing  # lazy: torch, on use

    try:
        return load_postprocessing(run_dirs[0])
    except FileNotFoundError as exc:
        raise click.BadParameter(
            f"{exc} (`fdseg train --folds-all` decides it)", param_hint="--keep-largest"
        ) from None
