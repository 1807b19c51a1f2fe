"""``fdseg check``: every problem of a dataset at once, and a remapped copy of it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fdseg_cli.options import count_option, progress_option

__all__ = ["check"]


@click.command()
@click.argument("dataset", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the report (every problem, and the summary) as JSON.",
)
@count_option("--jobs", default=2, help="Cases read at once, one process each.")
@click.option(
    "--remap",
    multiple=True,
    metavar="OLD[,OLD...]:NEW[:NAME]",
    help="With --out: write a copy whose label values OLD become NEW (several old values "
    "merge, e.g. left and right: 36,37:1); values not given become background. Repeat it "
    "for each new class, numbered 1 to K.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="With --remap: the new dataset's folder (nnU-Net v2 layout; the dataset itself is "
    "never changed).",
)
@progress_option
def check(dataset, json_path, jobs, remap, out, progress):
    """Read every case of DATASET once and list every problem, each with its case and
    file, then a count and a summary (shapes, spacings, orientations, intensity types
    and ranges, class volumes). Errors (missing or unreadable files, grids that differ,
    labels that are not integers, not listed or not consecutive, NaN or Inf) exit 2;
    warnings (empty labels, rare classes, mixed orientations, spacings or types) exit 0.
    `fdseg plan`, `train` and `experiment` run the same checks first. Results are cached
    by the files' sizes and times: a second check of an unchanged dataset reads nothing."""
    # lazy: the checks read NIfTI files (nibabel, numpy); `--help` stays instant
    from fdseg_core.atomic import atomic_write_text, check_output_file
    from fdseg_core.data.checks import check_dataset
    from fdseg_core.data.remap import parse_remap, remap_dataset

    if bool(remap) != bool(out):
        raise click.UsageError("--remap and --out go together: the mapping and the new folder")
    if remap:
        mapping = parse_remap(remap)
        folder, lines = remap_dataset(dataset, mapping, out, progress=progress)
        for line in lines:
            click.echo(line)
        click.echo(f"wrote a remapped copy of {dataset} to {folder}; checking it:")
        dataset = str(folder)
    if json_path:
        check_output_file(json_path)
    report = check_dataset(dataset, jobs=jobs, progress=progress)
    for line in report.lines():
        click.echo(line)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_path, json.dumps(report.as_dict(), indent=1) + "\n")
        click.echo(f"wrote {json_path}")
    if report.errors:
        raise click.exceptions.Exit(2)
