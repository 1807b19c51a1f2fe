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

from fdseg_core.choices import DEFAULT_MEMORY_GB, DEVICES
from fdseg_core.jobs.default import PHANTOM_TRAINING
from fdseg_core.train.config import option_spec

__all__ = [
    "FOLD",
    "ITERS",
    "TRAINING_FIELDS",
    "choice_option",
    "config_option",
    "count_option",
    "device_option",
    "explicit_options",
    "flag_of",
    "int_list",
    "memory_option",
    "options",
    "out_option",
    "progress_option",
    "shape_option",
    "switch_option",
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


def out_option(help: str, *, folder: bool = True, required: bool = True) -> Decorator:
    """``--out``: the folder (or, with ``folder=False``, the file) a command writes."""
    return click.option(
        "--out",
        type=click.Path(file_okay=not folder, dir_okay=folder),
        required=required,
        default=None,
        help=help,
    )


def switch_option(name: str, *, default: bool, help: str, dest: str | None = None) -> Decorator:
    """``--NAME/--no-NAME``: a boolean switch, its default shown (``dest`` names the
    parameter when it is not ``NAME``)."""
    decls = [f"--{name}/--no-{name}", *([dest] if dest else [])]
    return click.option(*decls, default=default, show_default=True, help=help)


def shape_option(help: str, *, default: tuple[int, int, int] | None = None) -> Decorator:
    """``--shape X Y Z``: a volume's size in voxels (``show_default`` when it has a default)."""
    return click.option(
        "--shape",
        type=(int, int, int),
        default=default,
        show_default=default is not None,
        help=help,
    )


memory_option = click.option(
    "--memory-gb",
    type=click.FloatRange(0.0, min_open=True),
    default=DEFAULT_MEMORY_GB,
    show_default=True,
    help="Memory budget of one training step when planning (GiB).",
)
progress_option = switch_option("progress", default=True, help="Show progress bars.")
device_option = choice_option(
    "--device",
    choices=list(DEVICES),
    default="auto",
    help="Where to run: auto (CUDA when available, else the CPU), cpu or cuda.",
)


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


#: Flags whose spelling differs from their config field's name.
_FLAGS = {"n_folds": "--folds"}
#: Click types of fields that are not plain numbers, strings or choices.
_TYPES: dict[str, Any] = {
    "iters_per_epoch": ITERS,
    "fold": FOLD,
    "patch_size": (int, int, int),
    "target_spacing": (float, float, float),
}


def flag_of(name: str) -> str:
    """The command-line flag of a config field (``n_folds`` -> ``--folds``)."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def config_option(name: str, **overrides: Any) -> Decorator:
    """The option of a :class:`~fdseg_core.train.TrainConfig` field, built from the
    field itself: its default, choices or range, and help text. Nothing is restated
    here; change a default in ``TrainConfig`` and ``--help`` follows.

    Where the built-in phantom's job (``fdseg train`` without DATASET) uses another
    default, the help text says so.
    """
    spec = option_spec(name)
    default, flag = spec["default"], flag_of(name)
    help_text = spec["help"]
    if name in PHANTOM_TRAINING:
        help_text += f" [{_shown(PHANTOM_TRAINING[name])} for the built-in phantom]"
    kwargs: dict[str, Any] = {
        "default": default,
        "help": help_text,
        "show_default": default is not None,
    }
    decls = [flag] + ([name] if flag != "--" + name.replace("_", "-") else [])
    if isinstance(default, bool):
        decls = [f"{flag}/--no-{flag[2:]}"]
    elif spec["choices"] is not None:
        kwargs["type"] = click.Choice(list(spec["choices"]))
    elif name in _TYPES:
        kwargs["type"] = _TYPES[name]
    elif spec["integer"]:
        kwargs["type"] = (
            click.IntRange(spec["low"], spec["high"]) if spec["low"] is not None else int
        )
    elif spec["low"] is not None or spec["high"] is not None:
        kwargs["type"] = click.FloatRange(
            spec["low"], spec["high"], min_open=spec["open_low"], max_open=spec["open_high"]
        )
    kwargs.update(overrides)
    return click.option(*decls, **kwargs)


#: Options whose command-line form differs from their field's: ``--mlflow`` alone means
#: the local file store (``fdseg_core.train.tracking.LOCAL``), ``--mlflow URI`` a server.
_OPTION_FORMS: dict[str, dict[str, Any]] = {
    "mlflow": {"is_flag": False, "flag_value": "local", "metavar": "[URI]"},
}

#: The training-run options of ``fdseg train`` and ``fdseg experiment``, in ``--help``
#: order; each is a :class:`~fdseg_core.train.TrainConfig` field.
TRAINING_FIELDS: tuple[str, ...] = (
    "recipe",
    "backbone",
    "beta",
    "layout",
    "backend",
    "kernel",
    "fusion_at",
    "stem_channels",
    "bands",
    "loss",
    "epochs",
    "iters_per_epoch",
    "patch_size",
    "augment",
    "batch_size",
    "lr",
    "weight_decay",
    "optimizer",
    "schedule",
    "grad_clip",
    "amp",
    "compile",
    "compile_mode",
    "channels_last",
    "val_every",
    "early_stop_patience",
    "early_stop_min_epochs",
    "early_stop_min_delta",
    "best_selection",
    "n_folds",
    "fold",
    "seed",
    "trainer",
    "device",
    "num_workers",
    "target_spacing",
    "tensorboard",
    "mlflow",
    "progress",
)


def training_options(func):
    """The options of one training run, shared by ``fdseg train`` and ``fdseg experiment``.

    Every option is a ``TrainConfig`` field (:func:`config_option`), plus
    ``--whole-volume`` (``patch_size="full"``). Only the options the user types are
    passed on (:func:`explicit_options`); the rest take the recipe's value or the
    default, by :func:`fdseg_core.train.recipes.resolve_fields`.
    """
    decorators = [config_option(name, **_OPTION_FORMS.get(name, {})) for name in TRAINING_FIELDS]
    whole = click.option(
        "--whole-volume",
        is_flag=True,
        default=False,
        help="Train on whole volumes padded to a common shape instead of patches "
        "(the paper's input); inference then predicts each volume in one pass.",
    )
    at = TRAINING_FIELDS.index("patch_size") + 1
    return options(*decorators[:at], whole, *decorators[at:])(func)


def explicit_options(names: Iterable[str]) -> set[str]:
    """Which of these parameters the user gave (command line or environment)."""
    ctx = click.get_current_context()
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {n for n in names if ctx.get_parameter_source(n) in given}
