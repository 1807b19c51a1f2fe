"""``fdseg train``: train a baseline or frequency-disentangled segmentation model."""

from __future__ import annotations

import sys

import click

from fdseg_cli.options import (
    config_option,
    count_option,
    explicit_options,
    memory_option,
    out_option,
    switch_option,
    training_options,
)
from fdseg_core.train.recipes import RECIPES

__all__ = ["train", "echo_recipe", "given_fields"]


def given_fields(opts: dict) -> dict:
    """The :class:`TrainConfig` fields the user typed among the options of
    :func:`training_options` (``recipe`` included); the job engine
    (:mod:`fdseg_core.jobs`) fills in the rest. Call it inside a click command (it asks
    click which options were given)."""
    return _given(opts)


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
        applied: The values the recipe set (:attr:`fdseg_core.jobs.TrainingJob.applied`).
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


@click.command()
@click.argument("dataset", required=False, type=click.Path(file_okay=False, path_type=str))
@out_option("Output folder [default: runs/<dataset>-<backbone>-<fusion>].", required=False)
@config_option("fusion")
@config_option("train_cases")
@config_option("case_draw")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in OUT where it stopped, with its own configuration (no other "
    "option is needed; runtime options (--device, --num-workers, --kernel, --tensorboard, "
    "--mlflow, --progress) and --epochs may change).",
)
@click.option(
    "--folds-all",
    is_flag=True,
    help="Train every fold of the cross-validation into OUT/fold_k, then pool their "
    "validation predictions (OUT/cv_summary.json) and decide the keep-largest "
    "post-processing per class (OUT/postprocessing.json). With --resume, fold by fold.",
)
@switch_option(
    "plan",
    dest="planning",
    default=True,
    help="Plan target spacing, patch and batch size from the dataset's fingerprint when "
    "you give no --patch-size, --target-spacing or --whole-volume (not on the built-in "
    "phantom, whose job pins its own); written to OUT/plans.json. A recipe's sizes win "
    "over the plan's (the default recipe's 48 x 48 x 32 patches and batch of 2).",
)
@click.option(
    "--shard",
    default=None,
    metavar="K/N",
    help="With --folds-all: train only the folds k with k % N == K-1 (one task of a job "
    "array); the pooled validation is made once every fold exists.",
)
@count_option("--jobs", default=1, help="With --folds-all: folds at once, one process each.")
@count_option(
    "--nproc-per-node",
    "nproc",
    default=None,
    minimum=2,
    help="Train on this many processes of this machine (DistributedDataParallel) through "
    "torchrun's launcher, as `torchrun --standalone --nproc-per-node N` would; a failed "
    "rank ends the job with its own one-line error and exit code, without torchrun's "
    "traceback.",
)
@memory_option
@training_options
def train(dataset, out, resume, folds_all, planning, shard, jobs, nproc, memory_gb, **opts):
    """Train on DATASET (nnU-Net v2 or MSD layout).

    Without DATASET, a small synthetic QSM midbrain dataset is generated once (cached
    in the user's cache folder) and the default recipe is trained on it: the paper's
    network, loss and optimiser on patches without augmentation, and no fusion
    (--recipe nnunet_like: the earlier default, unet3d with late fusion).
    With DATASET and no size options, target spacing, patch and batch size are planned
    from the dataset, and the recipe's sizes win over the plan's: the default recipe
    trains the 48 x 48 x 32 patches and batch of 2 it was measured with, on the planned
    spacing (`fdseg plan` prints the plan and what is trained). Use `--nproc-per-node N`
    (or `torchrun --nproc-per-node N --no-python fdseg train ...`) for several processes. `--resume`
    continues the run in OUT from its own configuration: give only what changes
    (--epochs to extend or end it earlier, --device, --num-workers, --tensorboard,
    --mlflow, --progress).
    """
    from fdseg_core.jobs import run_training_job, training_job  # lazy: keeps --help light
    from fdseg_core.parallel import parse_shard  # lazy: with the job engine

    if nproc is not None:
        _launch(nproc)
    given = given_fields(opts)
    if resume and out is None:
        raise click.UsageError("--resume needs --out: the folder of the run to continue")
    job = training_job(
        dataset,
        out,
        given=given,
        resume=resume,
        planning=planning,
        memory_gb=memory_gb,
        progress=opts["progress"],
    )
    for line in job.notes:
        click.echo(line, err=True)
    echo_recipe(job.config, job.applied)
    shard_k_n = parse_shard(shard) if shard is not None else None
    # an explicit budget is also a limit for sizes given by hand
    budget = memory_gb if "memory_gb" in explicit_options(["memory_gb"]) else None
    result = run_training_job(
        job, resume=resume, folds_all=folds_all, shard=shard_k_n, jobs=jobs, memory_gb=budget
    )
    if result.is_main:  # under torchrun, rank 0 reports
        click.echo(result.report)


def _launch(nproc: int) -> None:
    """Start this same command on ``nproc`` ranks (without ``--nproc-per-node``) and exit
    with the job's exit code; the ranks print their own lines."""
    from fdseg_core.train.distributed import launch  # lazy: loads torch

    ctx = click.get_current_context()
    argv = _without_option(sys.argv[1:], "--nproc-per-node")
    result = launch(argv, nproc, quiet=not (ctx.obj or {}).get("debug", False))
    if result.exit_code not in (0, 2) and result.rank is not None:
        # an input error (2) has said so on rank 0 in one line; anything else names its rank
        click.echo(f"rank {result.rank} exited with code {result.exit_code}", err=True)
    ctx.exit(result.exit_code)


def _without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without the option ``name`` and its value (``NAME V`` or ``NAME=V``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out
