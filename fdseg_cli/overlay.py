"""``fdseg overlay``: pictures of a case and its labels, or of every case of a dataset."""

from __future__ import annotations

from pathlib import Path

import click

from fdseg_cli.options import progress_option

__all__ = ["overlay"]


@click.command()
@click.argument("image", type=click.Path(exists=True))
@click.argument("label", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    required=True,
    type=click.Path(),
    help="The PNG to write (one case), or the folder of PNGs (a dataset).",
)
@click.option(
    "--dataset-json",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="dataset.json whose 'labels' name the classes in the legend [default: the one "
    "of the dataset the files sit in, when there is one].",
)
@progress_option
def overlay(image, label, out, dataset_json, progress):
    """Draw IMAGE with LABEL (any label map: a reference, fdseg's prediction or another
    tool's) as three anatomical planes through the labelled structures, in a PNG; or,
    when IMAGE is a dataset folder, every training case with its label into a folder of
    PNGs (one per case), as nnU-Net's plot_overlay_pngs does. Each volume is turned to
    the closest canonical orientation first, so the panels are axial, coronal and
    sagittal whatever order the file stores its axes in; the figure states the display
    convention and keeps the voxel aspect."""
    # lazy: nibabel and matplotlib; `--help` stays instant
    from fdseg_core.data import load_dataset
    from fdseg_core.data.layout import label_names_near, read_label_names

    names = read_label_names(dataset_json) if dataset_json else None
    if Path(image).is_dir():
        if label is not None:
            raise click.UsageError("a dataset folder takes no LABEL: its labels are drawn")
        info = load_dataset(image)
        folder = Path(out)
        cases = [c for c in info.training if c.label_path is not None]
        from fdseg_core.progress import progress_bar  # lazy: only for a dataset

        for case in progress_bar(cases, progress=progress, desc="overlay", unit="case"):
            _draw(
                case.image_paths[0],
                case.label_path,
                folder / f"{case.case_id}.png",
                names or info.labels,
                case.case_id,
            )
        click.echo(f"wrote {len(cases)} overlays to {folder}")
        return
    if names is None:
        names, _ = label_names_near(Path(label).parent if label else Path(image).parent)
    _draw(Path(image), Path(label) if label else None, Path(out), names, Path(image).name)
    click.echo(f"wrote {out}")


def _draw(image_path: Path, label_path: Path | None, png: Path, names, title: str) -> None:
    import numpy as np  # lazy: with the command

    from fdseg_core.data.io import load_nifti  # lazy: with the command
    from fdseg_core.infer.overlay import render_overlay  # lazy: with the command

    img = load_nifti(image_path)
    data = np.asanyarray(img.dataobj).astype(np.float32)
    if data.ndim == 4:
        data = data[..., 0]  # the first channel of a 4D (MSD) image
    if label_path is not None:
        lab = load_nifti(label_path)
        seg = np.rint(np.asanyarray(lab.dataobj)).astype(np.int64)
        if seg.shape != data.shape or not np.allclose(lab.affine, img.affine, atol=1e-3):
            raise click.BadParameter(
                f"{label_path} is not on the grid of {image_path} (shape {seg.shape} vs "
                f"{data.shape}, or another affine)",
                param_hint="LABEL",
            )
    else:
        seg = np.zeros(data.shape, dtype=np.int64)
    render_overlay(data, seg, png, labels=names, title=title, affine=np.asarray(img.affine))
