"""``fdseg plan``: target spacing, patch and batch size planned from a dataset."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fdseg_cli.options import (
    config_option,
    explicit_options,
    memory_option,
    options,
    progress_option,
)
from fdseg_core.train.config import TrainConfig
from fdseg_core.train.recipes import resolve_fields

__all__ = ["plan"]

#: The options the plan depends on (through the network's memory and the band width).
PLAN_FIELDS = ("recipe", "backbone", "fusion", "beta", "layout", "bands", "fusion_at")


@click.command()
@click.argument("dataset", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the plan and the fingerprint to this JSON file (plans.json).",
)
@memory_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@options(*[config_option(name) for name in PLAN_FIELDS])
@progress_option
def plan(dataset, out, memory_gb, as_json, progress, **opts):
    """Fingerprint DATASET (shapes, spacings, foreground intensities, label volumes) and
    plan the target spacing, patch and batch size, each with its reason. The last line
    is what `fdseg train DATASET` trains when no size option is given: the plan, but
    for the sizes the recipe sets (the default recipe's measured patch and batch size,
    --recipe paper's whole volumes; docs/planning.md)."""
    # lazy: planning builds the network (torch); `--help` stays instant
    from fdseg_core.jobs import resolve_planned
    from fdseg_core.planning import plan_run, save_plan

    explicit = explicit_options(opts)
    given = {k: v for k, v in opts.items() if k in explicit}
    recipe = given.pop("recipe", "default")
    fields, _ = resolve_fields(given, recipe=recipe)
    config = TrainConfig(dataset=str(dataset), out=".", **fields)
    result, fp = plan_run(config, memory_gb=memory_gb, progress=progress)
    if out is not None:
        save_plan(result, fp, Path(out))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
        return
    click.echo(
        f"{len(fp.cases)} training cases; median spacing "
        f"{[round(s, 3) for s in fp.median_spacing()]} mm, median shape "
        f"{[round(s) for s in fp.median_shape()]}"
    )
    click.echo(result.report())
    planned = result.fields()
    click.echo(f"plan: {_size_options(planned)}")
    # what `fdseg train DATASET` trains: the recipe's sizes win over the plan's
    trained, _, notes = resolve_planned(given, recipe, planned, result.median_shape)
    for line in notes:
        click.echo(line.removeprefix("plan: "))
    click.echo(f"fdseg train DATASET trains: {_size_options(trained)}")


def _size_options(fields: dict) -> str:
    """The size options that train these fields."""
    patch = fields["patch_size"]
    return "--target-spacing {} --patch-size {} --batch-size {}".format(
        " ".join(f"{s:g}" for s in fields["target_spacing"]),
        patch if isinstance(patch, str) else " ".join(map(str, patch)),
        fields["batch_size"],
    )
