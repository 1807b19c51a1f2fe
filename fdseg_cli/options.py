"""Options shared by several commands, defined once.

Each is a decorator (``@progress_option``); :func:`options` stacks a list of them in
the order they are listed. :func:`training_options` are the options of one training
run (``fdseg train`` and ``fdseg experiment``); :func:`explicit_options` tells which
the user typed, so that a recipe fills in only the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click
from click.core import ParameterSource

__all__ = [
    "FOLD",
    "ITERS",
    "choice_option",
    "count_option",
    "device_option",
    "explicit_options",
    "int_list",
    "options",
    "progress_option",
    "training_options",
]

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def options(*decorators: Decorator) -> Decorator:
    """Apply option decorators so that ``--help`` lists them in the given order."""

    def apply(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def count_option(*decls: str, minimum: int = 1, **kwargs: Any) -> Decorator:
    """An integer option with a lower bound (``show_default`` when it has a default)."""
    kwargs.setdefault("show_default", kwargs.get("default") is not None)
    return click.option(*decls, type=click.IntRange(minimum), **kwargs)


def choice_option(*decls: str, choices: Iterable[str], default: str, help: str | None = None):
    return click.option(
        *decls, type=click.Choice(list(choices)), default=default, show_default=True, help=help
    )


progress_option = click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show progress bars."
)
device_option = choice_option("--device", choices=["auto", "cpu", "cuda"], default="auto")


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


class _ItersType(click.ParamType):
    """Steps per epoch: a positive integer, or ``pass`` (one pass over the cases)."""

    name = "steps"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            if value is not None and value < 1:
                self.fail(f"{value} is not a positive number of steps", param, ctx)
            return value
        text = str(value).strip().lower()
        if text == "pass":
            return "pass"
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"{value!r} is not a positive number of steps or 'pass'", param, ctx)


FOLD = _FoldType()
ITERS = _ItersType()


def int_list(text: str, name: str) -> tuple[int, ...]:
    """``"2,4,8"`` -> ``(2, 4, 8)``; a bad list is a usage error naming the option."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of integers", param_hint=name
        ) from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: expected positive integers", param_hint=name)
    return values


def training_options(func):
    """The options of one training run, shared by ``fdseg train`` and ``fdseg experiment``.

    Options whose default is ``None`` take the recipe's value, then the built-in
    phantom's (when training on it), then :class:`~fdseg_core.train.TrainConfig`'s.
    """
    return options(
        choice_option(
            "--recipe",
            choices=["default", "paper"],
            default="default",
            help="A set of option values: fdseg's nnU-Net-like default, or the paper's "
            "(its network, loss, optimiser, whole volumes, layout; printed when used). "
            "Options you give override it.",
        ),
        click.option(
            "--backbone",
            default="unet3d",
            show_default=True,
            help="Registered backbone (see `fdseg backbones`).",
        ),
        click.option(
            "--beta", type=float, default=0.1, show_default=True, help="Relative band width."
        ),
        choice_option(
            "--layout",
            choices=["centered", "reference"],
            default="centered",
            help="Band layout: the paper's text (centered) or its public code.",
        ),
        choice_option(
            "--backend",
            choices=["auto", "torch", "matmul", "triton"],
            default="auto",
            help="Band operator backend.",
        ),
        choice_option(
            "--fusion-at",
            choices=["auto", "generic"],
            default="auto",
            help="Fuse at the backbone's fusion points when it has them (auto), or "
            "always with generic stems and head.",
        ),
        count_option("--stem-channels", default=8, help="Channels of the generic stems and head."),
        choice_option(
            "--bands",
            choices=["model", "volume"],
            default="model",
            help="Where the band split happens: in the model on each input, or once per "
            "whole volume in the data pipeline (patches carry both bands).",
        ),
        choice_option(
            "--loss",
            choices=["dice_ce", "sigmoid_dice"],
            default="dice_ce",
            help="Dice + cross-entropy, or the paper code's sigmoid Dice.",
        ),
        count_option(
            "--epochs", default=None, help="Epochs [default: 50; 12 for the built-in phantom]."
        ),
        click.option(
            "--iters-per-epoch",
            type=ITERS,
            default=None,
            help="Optimiser steps per epoch, or 'pass' for one pass over the training "
            "cases [default: 50; 20 for the phantom].",
        ),
        click.option(
            "--patch-size",
            type=(int, int, int),
            default=None,
            help="Patch D H W [default: 64 64 64; 48 48 32 for the phantom].",
        ),
        click.option(
            "--whole-volume",
            is_flag=True,
            default=None,
            help="Train on whole volumes padded to a common shape instead of patches "
            "(the paper's input); inference then predicts each volume in one pass.",
        ),
        click.option(
            "--augment/--no-augment",
            default=True,
            show_default=True,
            help="Random flips, rotations and intensity changes.",
        ),
        count_option("--batch-size", default=2),
        click.option("--lr", type=float, default=1e-3, show_default=True),
        click.option("--weight-decay", type=float, default=1e-5, show_default=True),
        choice_option("--optimizer", choices=["adamw", "adam", "sgd"], default="adamw"),
        choice_option("--schedule", choices=["poly", "cosine", "constant"], default="poly"),
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
            "--compile/--no-compile",
            default=False,
            show_default=True,
            help="Train through torch.compile (one graph; CUDA graphs with "
            "--compile-mode reduce-overhead on a GPU).",
        ),
        choice_option(
            "--compile-mode",
            choices=["default", "reduce-overhead", "max-autotune"],
            default="default",
        ),
        click.option(
            "--channels-last/--no-channels-last",
            default=False,
            show_default=True,
            help="Channels-last 3D weights and batches (about 20 % faster on the CPU).",
        ),
        count_option(
            "--val-every",
            default=None,
            help="Validate every K epochs [default: 5; 4 for the phantom].",
        ),
        count_option(
            "--early-stop-patience",
            default=None,
            help="Stop after this many validations without improvement [default: never].",
        ),
        count_option(
            "--early-stop-min-epochs",
            minimum=0,
            default=0,
            help="Never stop early before this many epochs.",
        ),
        click.option(
            "--early-stop-min-delta",
            type=click.FloatRange(0.0),
            default=0.0,
            show_default=True,
            help="Smallest mean-Dice gain that counts as an improvement.",
        ),
        count_option(
            "--folds",
            "n_folds",
            minimum=2,
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
        device_option,
        count_option("--num-workers", minimum=0, default=0, help="Data-loading worker processes."),
        click.option(
            "--target-spacing",
            type=(float, float, float),
            default=None,
            help="Resample cases to this spacing (mm) first.",
        ),
        click.option("--tensorboard/--no-tensorboard", default=False, show_default=True),
        progress_option,
    )(func)


def explicit_options(names: Iterable[str]) -> set[str]:
    """Which of these parameters the user gave (command line or environment)."""
    ctx = click.get_current_context()
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {n for n in names if ctx.get_parameter_source(n) in given}
