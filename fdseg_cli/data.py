"""``fdseg data``: public datasets, fetched and checked."""

from __future__ import annotations

import click

from fdseg_cli.options import progress_option

__all__ = ["data"]

_TASKS = (
    "Task01_BrainTumour, Task02_Heart, Task03_Liver, Task04_Hippocampus, Task05_Prostate, "
    "Task06_Lung, Task07_Pancreas, Task08_HepaticVessel, Task09_Spleen, Task10_Colon"
)


@click.group()
def data():
    """Public datasets: download, check and unpack them where fdseg reads them."""


@data.command(
    help="Download TASK of the Medical Segmentation Decathlon into OUT/TASK: fetch its "
    "archive (resuming a download cut short), check its published MD5, unpack it without "
    "writing outside OUT, and leave an MSD dataset that fdseg plan, train and experiment "
    f"read as it is. TASK is one of {_TASKS} (or a unique prefix, Task04). The data are "
    "CC-BY-SA 4.0: cite Simpson et al. (2019) and Antonelli et al. (2022).",
    short_help="Download, check and unpack a task of the Medical Segmentation Decathlon.",
)
@click.argument("task")
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Folder the task goes into."
)
@click.option(
    "--mirror",
    default=None,
    metavar="URL",
    help="A folder URL holding <task>.tar (a lab's copy; file:// works too), used instead of "
    "the official location; the published checksum is checked all the same.",
)
@click.option(
    "--md5",
    default=None,
    help="The checksum of an archive that is not the official one (a curated copy).",
)
@progress_option
def msd(task, out, mirror, md5, progress):
    (
        """Download TASK of the Medical Segmentation Decathlon into OUT/TASK: fetch its
    archive (resuming a download cut short), check its published MD5, unpack it without
    writing outside OUT, and leave an MSD dataset that fdseg plan, train and experiment
    read as it is. TASK is one of """
        + _TASKS
        + """ (or a unique prefix, Task04). The
    data are CC-BY-SA 4.0: cite Simpson et al. (2019) and Antonelli et al. (2022)."""
    )
    # lazy: urllib and tarfile only when the command runs
    from fdseg_core.data.download import download_msd

    folder = download_msd(
        task, out, mirror=mirror, md5=md5, progress=progress, say=lambda m: click.echo(m, err=True)
    )
    click.echo(f"{folder}: ready (fdseg check {folder} lists its cases)")
