"""Builders the tests share: a tiny training run as a configuration or as command-line
options (imported as ``builders``: ``pythonpath = ["tests"]`` in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fdseg_core.train import TrainConfig

#: A small unet3d: two levels below the top, four filters.
SMALL_NET = {"base_filters": 4, "levels": 3}

#: The fields of a tiny run: one step of 16 x 16 x 8 patches, a validation per epoch,
#: two folds, no progress bars.
TINY_FIELDS: dict[str, Any] = dict(
    epochs=1,
    iters_per_epoch=1,
    patch_size=(16, 16, 8),
    val_every=1,
    n_folds=2,
    progress=False,
)


def tiny_config(ds: str | Path, out: str | Path, **changes: Any) -> TrainConfig:
    """A tiny run's :class:`TrainConfig` on ``ds`` (with the small network), changed."""
    fields = {**TINY_FIELDS, "backbone_options": SMALL_NET, **changes}
    return TrainConfig(dataset=str(ds), out=str(out), **fields)


def tiny_args(*, epochs: int = 1, iters: int = 1, folds: bool = True) -> list[str]:
    """The command-line options of a tiny run (the default network)."""
    args = ["--epochs", str(epochs), "--iters-per-epoch", str(iters)]
    args += ["--patch-size", "16", "16", "8", "--val-every", "1"]
    args += ["--folds", "2"] if folds else []
    return [*args, "--no-progress"]
