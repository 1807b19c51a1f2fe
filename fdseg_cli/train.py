"""``fdseg train``: train a baseline or frequency-disentangled segmentation model."""

from __future__ import annotations

import click

__all__ = ["train", "training_options", "FOLD"]


class _FoldType(click.ParamType):
    """A fold index (``0``, ``1``, ...) or ``all`` (nnU-Net's fold of every case)."""

    name = "fold"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text == "all":
            return "all"
        if text.isdigit():
            return int(text)
        self.fail(f"{value!r} is not a fold index (0, 1, ...) or 'all'", param, ctx)


FOLD = _FoldType()


def training_options(func):
    """Options shared by ``fdseg train`` and ``fdseg experiment``."""
    options = [
        click.option(
            "--backbone",
            default="unet3d",
            show_default=True,
            help="Registered backbone (see `fdseg backbones`).",
        ),
        click.option(
            "--beta",
            type=float,
            default=0.1,
            show_default=True,
            help="Relative width of the low band.",
        ),
        click.option(
            "--layout",
            type=click.Choice(["centered", "reference"]),
            default="centered",
            show_default=True,
            help="Band layout: the paper's text (centered) or its public code.",
        ),
        click.option(
            "--backend",
            type=click.Choice(["auto", "torch", "matmul", "triton"]),
            default="auto",
            show_default=True,
            help="Band operator backend.",
        ),
        click.option("--stem-channels", type=click.IntRange(1), default=8, show_default=True),
        click.option(
            "--epochs",
            type=click.IntRange(1),
            default=None,
            help="Epochs [default: 50; 12 for the built-in phantom].",
        ),
        click.option(
            "--iters-per-epoch",
            type=click.IntRange(1),
            default=None,
            help="Optimiser steps per epoch [default: 50; 20 for the phantom].",
        ),
        click.option(
            "--patch-size",
            type=(int, int, int),
            default=None,
            help="Patch D H W [default: 64 64 64; 48 48 32 for the phantom].",
        ),
        click.option("--batch-size", type=click.IntRange(1), default=2, show_default=True),
        click.option("--lr", type=float, default=1e-3, show_default=True),
        click.option("--weight-decay", type=float, default=1e-5, show_default=True),
        click.option(
            "--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True
        ),
        click.option(
            "--schedule",
            type=click.Choice(["poly", "cosine", "constant"]),
            default="poly",
            show_default=True,
        ),
        click.option(
            "--grad-clip",
            type=float,
            default=12.0,
            show_default=True,
            help="Gradient-norm clip (0 disables).",
        ),
        click.option(
            "--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA."
        ),
        click.option(
            "--val-every",
            type=click.IntRange(1),
            default=None,
            help="Validate every K epochs [default: 5; 4 for the phantom].",
        ),
        click.option(
            "--folds",
            "n_folds",
            type=click.IntRange(2),
            default=None,
            help="Cross-validation folds [default: 5, or one per training case when there "
            "are fewer; a single case trains and validates on itself].",
        ),
        click.option(
            "--fold",
            type=FOLD,
            default=0,
            show_default=True,
            help="Validation fold, or 'all' to train and validate on every case.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            default="auto",
            show_default=True,
        ),
        click.option(
            "--num-workers",
            type=click.IntRange(0),
            default=0,
            show_default=True,
            help="Data-loading worker processes.",
        ),
        click.option(
            "--target-spacing",
            type=(float, float, float),
            default=None,
            help="Resample cases to this spacing (mm) first.",
        ),
        click.option("--tensorboard/--no-tensorboard", default=False, show_default=True),
        click.option("--progress/--no-progress", default=True, show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_config(dataset, out, fusion, train_cases, **opts):
    """A :class:`TrainConfig` from CLI options (``None`` options take the defaults)."""
    from fdseg_core.train import TrainConfig
    from fdseg_core.train.default import PHANTOM_TRAINING

    defaults = dict(PHANTOM_TRAINING) if opts.pop("_phantom", False) else {}
    fields = {k: v for k, v in opts.items() if v is not None}
    for key, value in defaults.items():
        fields.setdefault(key, value)
    return TrainConfig(
        dataset=str(dataset), out=str(out), fusion=fusion, train_cases=train_cases, **fields
    )


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
    if out is None:
        out = Path("runs") / f"{Path(dataset).name}-{opts['backbone']}-{fusion}"
    config = build_config(dataset, out, fusion, train_cases, _phantom=phantom, **opts)
    summary = run_training(config, resume=resume)
    if summary.get("is_main", True):
        click.echo(summary["report"])
