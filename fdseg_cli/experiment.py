"""``fdseg experiment``: the paper's training-size x method x seed protocol."""

from __future__ import annotations

import click

from fdseg_cli.train import training_options

__all__ = ["experiment"]


def _int_list(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of integers", param_hint=name
        ) from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: expected positive integers", param_hint=name)
    return values


@click.command()
@click.argument("dataset", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Experiment folder (runs, tables, plot).",
)
@click.option(
    "--train-sizes", default="2,4,8", show_default=True, help="Comma-separated training-set sizes."
)
@click.option(
    "--fusion",
    "fusions",
    default="none,early,late",
    show_default=True,
    help="Comma-separated methods; 'none' is the baseline.",
)
@click.option(
    "--seeds",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Seeds per (size, method).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(100),
    default=10000,
    show_default=True,
    help="Bootstrap resamples of the confidence intervals.",
)
@training_options
def experiment(dataset, out, train_sizes, fusions, seeds, bootstrap, **opts):
    """Train every (training size, method, seed) on DATASET, evaluate each on the same
    held-out test cases, and write a table (CSV, Markdown) and a plot. Finished runs are
    skipped, so an interrupted experiment resumes."""
    from fdseg_core.experiment import ExperimentConfig, run_experiment

    sizes = _int_list(train_sizes, "--train-sizes")
    methods = tuple(m.strip() for m in fusions.split(",") if m.strip())
    bad = [m for m in methods if m not in ("none", "early", "late")]
    if bad or not methods:
        raise click.BadParameter(
            f"unknown methods {bad}; expected none, early, late", param_hint="--fusion"
        )
    progress = opts.pop("progress")
    first_seed = opts.pop("seed")
    training = {k: v for k, v in opts.items() if v is not None}
    config = ExperimentConfig(
        dataset=str(dataset),
        out=str(out),
        train_sizes=sizes,
        fusions=methods,
        seeds=seeds,
        first_seed=first_seed,
        training=training,
        n_resamples=bootstrap,
    )
    report = run_experiment(config, progress=progress)
    click.echo(report["markdown"])
    click.echo(f"wrote {out}/table.csv, {out}/table.md and {report['plot']}")
