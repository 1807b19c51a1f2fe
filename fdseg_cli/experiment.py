"""``fdseg experiment``: the paper's training-size x method x seed protocol."""

from __future__ import annotations

import click

from fdseg_cli.options import (
    count_option,
    explicit_options,
    int_list,
    memory_option,
    out_option,
    training_options,
)
from fdseg_cli.train import echo_recipe, given_fields
from fdseg_core.choices import FUSIONS, LAYOUTS

__all__ = ["experiment"]


@click.command()
@click.argument("dataset", type=click.Path(file_okay=False, exists=True))
@out_option("Experiment folder (runs, tables, plot).")
@click.option(
    "--train-sizes", default="2,4,8", show_default=True, help="Comma-separated training-set sizes."
)
@click.option(
    "--fusion",
    "fusions",
    default=",".join(FUSIONS),
    show_default=True,
    help="Comma-separated methods; 'none' is the baseline.",
)
@count_option("--seeds", default=3, help="Seeds per (size, method).")
@click.option(
    "--layouts",
    default=None,
    help=f"Comma-separated band layouts to compare ({','.join(LAYOUTS)}): each fusion runs "
    "once per layout [default: the --layout option's].",
)
@click.option(
    "--checkpoint",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Evaluate each run's best validation checkpoint (the one early stopping selects, "
    "as `fdseg predict` takes), or its last one.",
)
@count_option(
    "--bootstrap",
    minimum=100,
    default=10000,
    help="Bootstrap resamples of the confidence intervals.",
)
@click.option(
    "--plan/--no-plan",
    "planning",
    default=True,
    show_default=True,
    help="Plan target spacing, patch and batch size from the dataset, as `fdseg train` "
    "does, when you give no --patch-size, --target-spacing or --whole-volume; recorded "
    "in OUT/plans.json and OUT/experiment.json.",
)
@memory_option
@training_options
def experiment(
    dataset,
    out,
    train_sizes,
    fusions,
    seeds,
    layouts,
    checkpoint,
    bootstrap,
    planning,
    memory_gb,
    **opts,
):
    """Train every (training size, method, seed) on DATASET, evaluate each on the same
    held-out test cases, and write a table (CSV, Markdown), a plot of Dice against training
    size and the training curves of every run. Finished runs are
    skipped, so an interrupted experiment resumes."""
    # the experiment imports torch: only when the command runs, so --help is instant
    from fdseg_core.jobs import experiment_job, run_experiment_job

    sizes = int_list(train_sizes, "--train-sizes")
    methods = tuple(m.strip() for m in fusions.split(",") if m.strip())
    bad = [m for m in methods if m not in FUSIONS]
    if bad or not methods:
        raise click.BadParameter(
            f"unknown methods {bad}; expected {', '.join(FUSIONS)}", param_hint="--fusion"
        )
    layout_list = ()
    if layouts:
        if "layout" in explicit_options(["layout"]):
            raise click.UsageError("--layouts and --layout exclude each other")
        layout_list = tuple(x.strip() for x in layouts.split(",") if x.strip())
        bad_layouts = [x for x in layout_list if x not in LAYOUTS]
        if bad_layouts or not layout_list:
            raise click.BadParameter(
                f"unknown layouts {bad_layouts}; expected {', '.join(LAYOUTS)}",
                param_hint="--layouts",
            )
    given = given_fields(opts)
    config, job = experiment_job(
        dataset,
        out,
        given=given,
        planning=planning,
        memory_gb=memory_gb,
        progress=opts["progress"],
        train_sizes=sizes,
        fusions=methods,
        seeds=seeds,
        n_resamples=bootstrap,
        layouts=layout_list,
        checkpoint=checkpoint,
    )
    for line in job.notes:
        click.echo(line, err=True)
    per_run = {"fusion": f"per run, from --fusion {fusions}"}
    if layout_list:
        per_run["layout"] = f"per run, from --layouts {layouts}"
    echo_recipe(job.config, job.applied, per_run=per_run)
    report = run_experiment_job(config, job, progress=job.config.progress)
    click.echo(report["markdown"])
    curves = f", {report['curves']}" if report.get("curves") else ""
    click.echo(f"wrote {out}/table.csv, {out}/table.md, {report['plot']}{curves}")
