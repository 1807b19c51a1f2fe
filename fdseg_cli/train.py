"""``fdseg train``: train a baseline or frequency-disentangled segmentation model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fdseg_cli.options import (
    config_option,
    explicit_options,
    memory_option,
    out_option,
    training_options,
)
from fdseg_core.train import default as default_job
from fdseg_core.train.config import TrainConfig, option_spec
from fdseg_core.train.default import PHANTOM_TRAINING
from fdseg_core.train.recipes import RECIPES, resolve_fields

__all__ = ["train", "echo_recipe", "training_fields"]


def training_fields(
    opts: dict, *, phantom: bool = False, plan: dict | None = None
) -> tuple[dict, dict]:
    """:class:`TrainConfig` fields from the options of :func:`training_options`.

    Only the options the user typed are passed on; the one precedence rule
    (:func:`fdseg_core.train.recipes.resolve_fields`: your option, then the recipe's
    value, then the default) fills in the rest. The default is the built-in phantom's
    own sizes on the phantom, and a dataset's plan (``plan``: target spacing, patch and
    batch size) when one was made. Call it inside a click command (it asks click which
    options were given).

    Returns:
        ``(fields, applied)``: the fields (``recipe`` included) and the values the
        recipe set.
    """
    given = _given(opts)
    recipe = given.pop("recipe", "default")
    defaults = PHANTOM_TRAINING if phantom else plan
    return resolve_fields(given, recipe=recipe, defaults=defaults)


def _given(opts: dict) -> dict:
    """The training options the user typed, as config fields."""
    explicit = explicit_options(opts)
    given = {k: v for k, v in opts.items() if k in explicit}
    if given.pop("whole_volume", False):
        if "patch_size" in given:
            raise click.UsageError("--whole-volume and --patch-size exclude each other")
        given["patch_size"] = "full"
    if given.get("iters_per_epoch") == "pass":
        given["iters_per_epoch"] = None  # one pass over the training cases per epoch
    return given


def echo_recipe(config, applied: dict, *, per_run: dict[str, str] | None = None) -> None:
    """Print, on stderr, every value a recipe set and the options that overrode it.

    Args:
        config: The resulting configuration.
        applied: The values the recipe set (:func:`training_fields`).
        per_run: Fields an experiment sets per run instead, with the reason.
    """
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


#: The options that decide sizes: giving one turns planning off (`fdseg train`).
SIZE_OPTIONS = ("patch_size", "target_spacing", "whole_volume")


@click.command()
@click.argument("dataset", required=False, type=click.Path(file_okay=False, path_type=str))
@out_option("Output folder [default: runs/<dataset>-<backbone>-<fusion>].", required=False)
@config_option("fusion")
@config_option("train_cases")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt where it stopped.")
@click.option(
    "--folds-all",
    is_flag=True,
    help="Train every fold of the cross-validation into OUT/fold_k, then pool their "
    "validation predictions (OUT/cv_summary.json) and decide the keep-largest "
    "post-processing per class (OUT/postprocessing.json). With --resume, fold by fold.",
)
@click.option(
    "--plan/--no-plan",
    "planning",
    default=True,
    show_default=True,
    help="Plan target spacing, patch and batch size from the dataset's fingerprint when "
    "you give no --patch-size, --target-spacing or --whole-volume (not on the built-in "
    "phantom, whose job pins its own); written to OUT/plans.json.",
)
@memory_option
@training_options
def train(dataset, out, resume, folds_all, planning, memory_gb, **opts):
    """Train on DATASET (nnU-Net v2 or MSD layout).

    Without DATASET, a small synthetic QSM midbrain dataset is generated once (cached
    in the user's cache folder) and a frequency-disentangled unet3d is trained on it.
    With DATASET and no size options, target spacing, patch and batch size are planned
    from the dataset (`fdseg plan` prints the same plan). Use `torchrun
    --nproc-per-node N --no-python fdseg train ...` for several processes. `--resume`
    accepts other runtime options (--device, --num-workers, --tensorboard, --progress)
    and another --epochs (a larger value extends the run, a smaller one ends it
    earlier).
    """
    # the training loop imports torch: only when the command runs, so --help is instant
    from fdseg_core.train import train as run_training

    phantom = dataset is None
    if phantom:
        dataset = default_job.ensure_default_dataset(progress=opts["progress"])
        click.echo(f"no DATASET given: using the built-in QSM phantom at {dataset}", err=True)
    elif not Path(dataset).is_dir():
        raise click.BadParameter(f"dataset folder {dataset} does not exist", param_hint="DATASET")
    fields, applied = training_fields(opts, phantom=phantom)
    if out is None:
        name = {k: fields.get(k, option_spec(k)["default"]) for k in ("backbone", "fusion")}
        out = Path("runs") / f"{Path(dataset).name}-{name['backbone']}-{name['fusion']}"
    sized = any(k in explicit_options(opts) for k in SIZE_OPTIONS)
    planned = None
    if planning and not phantom and not sized:
        planned = _plan_for(dataset, out, fields, resume, memory_gb, opts["progress"])
        fields, applied = training_fields(opts, plan=planned.fields())
    config = TrainConfig(dataset=str(dataset), out=str(out), **fields)
    echo_recipe(config, applied)
    try:
        if folds_all:
            from fdseg_core.crossval import cross_validate  # lazy: torch, on use

            summary = cross_validate(config, resume=resume, progress=config.progress)
            click.echo(_cv_report(summary, Path(out)))
            return
        summary = run_training(config, resume=resume)
        if summary.get("is_main", True):
            click.echo(summary["report"])
    finally:
        started = any(Path(out).glob("config.json")) or any(Path(out).glob("fold_*/config.json"))
        if planned is not None and started:  # with the run it planned, not for a refused one
            planned.save(Path(out) / "plans.json")


class _Planned:
    """A plan to record next to its run: made now, or read back from ``plans.json``."""

    def __init__(self, fields: dict, plan=None, fp=None, saved: dict | None = None) -> None:
        self._fields, self.plan, self.fp, self.saved = fields, plan, fp, saved

    def fields(self) -> dict:
        return dict(self._fields)

    def save(self, path: Path) -> None:
        if self.plan is not None:
            from fdseg_core.planning import save_plan  # lazy: torch, on use

            save_plan(self.plan, self.fp, path)


def _plan_for(dataset, out, fields: dict, resume: bool, memory_gb: float, progress: bool):
    """The plan of a run: read from OUT/plans.json when resuming, else planned from the
    dataset (its reasons printed on stderr; :func:`train` writes it to OUT/plans.json
    once the run has started)."""
    from fdseg_core.planning import plan_run  # lazy: torch, on use

    path = Path(out) / "plans.json"
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        click.echo(f"plan: read from {path}", err=True)
        keep = ("target_spacing", "patch_size", "batch_size")
        return _Planned(
            {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in keep},
            saved=saved,
        )
    probe = TrainConfig(dataset=str(dataset), out=str(out), **fields)
    plan, fp = plan_run(probe, memory_gb=memory_gb, progress=progress)
    for line in plan.report().splitlines():
        click.echo(f"plan: {line}", err=True)
    return _Planned(plan.fields(), plan, fp)


def _cv_report(summary: dict, out: Path) -> str:
    lines = [f"cross-validation of {summary['n_folds']} folds -> {out}"]
    for name, dice in summary["pooled_dice"].items():
        after = summary["postprocessed_dice"].get(name)
        mode = "" if name == "mean" else f" (keep largest: {summary['keep_largest_by_name'][name]})"
        lines.append(f"  pooled validation Dice {name:>20}: {dice:.4f} -> {after:.4f}{mode}")
    lines.append(f"  written: {out / 'cv_summary.json'}, {out / 'postprocessing.json'}")
    return "\n".join(lines)
