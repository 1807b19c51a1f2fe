"""Training recipes: named sets of :class:`~fdseg_core.train.TrainConfig` values.

A recipe is configuration, not code: each is a dict of config fields that
:func:`apply_recipe` fills in where the user set nothing, and every value ends up in
``config.json`` and the checkpoints like any other field.

* ``"default"``: fdseg's own recipe, nnU-Net-like (Dice + cross-entropy, AdamW, poly
  schedule, foreground-oversampled augmented patches). It sets nothing: the
  :class:`TrainConfig` defaults are that recipe.
* ``"paper"``: the public code of Fu et al. (``train/train_parkinson.py``,
  ``lib/train/trainer.py``, ``lib/medzoo/__init__.py``, ``lib/losses3D``): its network
  (``paper_unet3d``), its Dice loss (V-Net Dice of per-channel sigmoids, background
  left out), Adam at a constant learning rate of 1e-3 with weight decay 1e-10, batch 2,
  whole volumes without augmentation, an epoch being one pass over the training cases,
  300 epochs, beta 0.1 and the code's unshifted band layout (``"reference"``; pass
  ``layout="centered"`` for the paper's text). Two things differ, on purpose:
  validation uses held-out cases (the code iterates the training loader in
  ``validate_epoch``), and fdseg normalises QSM per case where the code feeds the stored
  values (``docs/network.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["RECIPES", "apply_recipe", "recipe_values"]

RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {
        "backbone": "paper_unet3d",
        "loss": "sigmoid_dice",
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 1e-10,
        "schedule": "constant",
        "grad_clip": 0.0,
        "batch_size": 2,
        "patch_size": "full",
        "bands": "model",
        "augment": False,
        "amp": False,
        "iters_per_epoch": None,
        "epochs": 300,
        "val_every": 1,
        "beta": 0.1,
        "layout": "reference",
        "stem_channels": 8,
        "fusion_at": "auto",
    },
}


def recipe_values(name: str) -> dict[str, Any]:
    """The config values a recipe sets.

    Raises:
        ValueError: Unknown recipe (the message lists the known ones).
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)}")
    return dict(RECIPES[name])


def apply_recipe(
    name: str, options: Mapping[str, Any], *, explicit: Iterable[str] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge a recipe into config options; options the user set explicitly win.

    Args:
        name: Recipe name.
        options: Config field values (from the CLI or code).
        explicit: Names of the options the user set explicitly (they override the
            recipe); the others take the recipe's value where it has one.

    Returns:
        ``(merged, applied)``: the options with the recipe's values filled in (and
        ``recipe`` set), and the recipe values that were applied (to print).
    """
    values = recipe_values(name)
    explicit = set(explicit)
    merged = dict(options)
    applied = {}
    for key, value in values.items():
        if key in explicit:
            continue
        merged[key] = value
        applied[key] = value
    merged["recipe"] = name
    return merged, applied
