"""``fdseg train``: train a baseline or frequency-disentangled segmentation model."""

from __future__ import annotations

import click

from fdseg_cli.options import explicit_options, training_options

__all__ = ["train", "build_config", "echo_recipe", "training_fields"]


def training_fields(opts: dict, *, phantom: bool = False) -> tuple[dict, dict]:
    """:class:`TrainConfig` fields from the options of :func:`training_options`.

    Precedence: options the user gave, then the recipe's values, then (on the built-in
    phantom) :data:`~fdseg_core.train.default.PHANTOM_TRAINING`, then the config's
    defaults. Call it inside a click command (it asks click which options were given).

    Returns:
        ``(fields, applied)``: the fields (``recipe`` included) and the values the
        recipe set.
    """
    from fdseg_core.train import apply_recipe
    from fdseg_core.train.default import PHANTOM_TRAINING

    opts = dict(opts)
    explicit = explicit_options(opts)
    recipe = opts.pop("recipe", "default")
    if opts.pop("whole_volume", False):
        if "patch_size" in explicit:
            raise click.UsageError("--whole-volume and --patch-size exclude each other")
        opts["patch_size"] = "full"
        explicit.add("patch_size")
    fields = {k: v for k, v in opts.items() if v is not None}
    if fields.get("iters_per_epoch") == "pass":
        fields["iters_per_epoch"] = None  # one pass over the training cases per epoch
    fields, applied = apply_recipe(recipe, fields, explicit=explicit)
    if phantom:
        for key, value in PHANTOM_TRAINING.items():
            fields.setdefault(key, value)
    return fields, applied


def build_config(dataset, out, fusion, train_cases, *, phantom: bool = False, **opts):
    """A :class:`TrainConfig` from CLI options (see :func:`training_fields`).

    Returns:
        ``(config, applied)``: the config and the values the recipe set.
    """
    from fdseg_core.train import TrainConfig

    fields, applied = training_fields(opts, phantom=phantom)
    config = TrainConfig(
        dataset=str(dataset), out=str(out), fusion=fusion, train_cases=train_cases, **fields
    )
    return config, applied


def echo_recipe(config, applied: dict, *, per_run: dict[str, str] | None = None) -> None:
    """Print, on stderr, every value a recipe set and the options that overrode it.

    Args:
        config: The resulting configuration.
        applied: The values the recipe set (:func:`training_fields`).
        per_run: Fields an experiment sets per run instead, with the reason.
    """
    from fdseg_core.train import RECIPES

    if config.recipe == "default":
        return
    per_run = per_run or {}
    click.echo(f"recipe '{config.recipe}' sets:", err=True)
    for key in RECIPES[config.recipe]:
        if key in per_run:
            click.echo(f"  {key}: {per_run[key]}", err=True)
            continue
        value = getattr(config, key)
        note = "" if key in applied else "   (overridden by your option)"
        click.echo(f"  {key} = {value!r}{note}", err=True)


@click.command()
@click.argument("dataset", required=False, type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder [default: runs/<dataset>-<backbone>-<fusion>].",
)
@click.option(
    "--fusion",
    type=click.Choice(["none", "early", "late"]),
    default="early",
    show_default=True,
    help="Baseline (none) or where the bands are fused.",
)
@click.option(
    "--train-cases",
    type=click.IntRange(1),
    default=None,
    help="Train on this many cases of the fold (the paper varies it).",
)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt where it stopped.")
@training_options
def train(dataset, out, fusion, train_cases, resume, **opts):
    """Train on DATASET (nnU-Net v2 or MSD layout).

    Without DATASET, a small synthetic QSM midbrain dataset is generated once (cached
    in the user's cache folder) and a frequency-disentangled unet3d is trained on it.
    Use `torchrun --nproc-per-node N --no-python fdseg train ...` for several processes.
    """
    from pathlib import Path

    from fdseg_core.train import train as run_training
    from fdseg_core.train.default import ensure_default_dataset

    phantom = dataset is None
    if phantom:
        dataset = ensure_default_dataset(progress=opts["progress"])
        click.echo(f"no DATASET given: using the built-in QSM phantom at {dataset}", err=True)
    elif not Path(dataset).is_dir():
        raise click.BadParameter(f"dataset folder {dataset} does not exist", param_hint="DATASET")
    config, applied = build_config(
        dataset, out or ".", fusion, train_cases, phantom=phantom, **opts
    )
    if out is None:
        out = Path("runs") / f"{Path(dataset).name}-{config.backbone}-{fusion}"
        config = config.replace(out=str(out))
    echo_recipe(config, applied)
    summary = run_training(config, resume=resume)
    if summary.get("is_main", True):
        click.echo(summary["report"])
