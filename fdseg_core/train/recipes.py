"""Training recipes: named sets of :class:`~fdseg_core.train.TrainConfig` values.

A recipe is configuration, not code: each is a dict of config fields that
:func:`apply_recipe` fills in where the user set nothing, and every value ends up in
``config.json`` and the checkpoints like any other field.

* ``"default"``: the paper's recipe trained on patches: the paper's network
  (``paper_unet3d``), its sigmoid Dice loss, Adam at a constant learning rate of 1e-3
  (weight decay 1e-10, no gradient clip), batches of two foreground-oversampled
  48 x 48 x 32 patches without augmentation, the paper text's centred band layout, and
  no fusion. The :class:`TrainConfig` defaults are that recipe. It sets its patch and
  batch size, the sizes it was measured with, so that they win over a plan (as
  ``"paper"``'s whole volumes do); a plan still sets the target spacing. How it was
  chosen, and how it compares, is in ``docs/findings.md`` and ``docs/planning.md``.
* ``"nnunet_like"``: fdseg's earlier default recipe, nnU-Net-like: ``unet3d``,
  late fusion, Dice + cross-entropy, AdamW (weight decay 1e-5) with a poly schedule and
  a gradient clip of 12, augmented patches. Its sizes are planned (or the built-in
  job's): it sets none.
* ``"paper"``: the public code of Fu et al. (``train/train_parkinson.py``,
  ``lib/train/trainer.py``, ``lib/medzoo/__init__.py``, ``lib/losses3D``): its network
  (``paper_unet3d``), its Dice loss (V-Net Dice of per-channel sigmoids, background
  left out), Adam at a constant learning rate of 1e-3 with weight decay 1e-10, batch 2,
  whole volumes without augmentation, an epoch being one pass over the training cases,
  300 epochs, beta 0.1, early fusion (the code has an early and a late model; the
  recipe kept early) and the code's unshifted band layout (``"reference"``; pass
  ``layout="centered"`` for the paper's text). It reproduces the code and recommends
  nothing: the README's table b measures each fusion and layout. Two things differ, on
  purpose: validation uses held-out cases (the code iterates the training loader in
  ``validate_epoch``), and fdseg normalises QSM per case where the code feeds the stored
  values (``docs/network.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fdseg_core.errors import InputError

__all__ = ["RECIPES", "apply_recipe", "recipe_values", "resolve_fields"]

RECIPES: dict[str, dict[str, Any]] = {
    "default": {"patch_size": (48, 48, 32), "batch_size": 2},
    "nnunet_like": {
        "backbone": "unet3d",
        "fusion": "late",
        "loss": "dice_ce",
        "optimizer": "adamw",
        "weight_decay": 1e-5,
        "schedule": "poly",
        "grad_clip": 12.0,
        "augment": True,
    },
    "paper": {
        "backbone": "paper_unet3d",
        "fusion": "early",
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
        raise InputError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)}")
    return dict(RECIPES[name])


def resolve_fields(
    given: Mapping[str, Any],
    *,
    recipe: str = "default",
    defaults: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Config field values by fdseg's one precedence rule: what the user gave, then
    the recipe's value, then the default.

    The command line, :func:`apply_recipe` and ``fdseg experiment`` all merge through
    this function; no other place decides which value wins.

    Args:
        given: The fields the user set (on the command line: only the options typed).
        recipe: The recipe's name (:data:`RECIPES`).
        defaults: Defaults that replace :class:`~fdseg_core.train.TrainConfig`'s for
            this job (the built-in phantom's sizes, for instance); fields in neither take
            the config's own default.

    Returns:
        ``(fields, applied)``: the merged fields (``recipe`` included) and the recipe
        values that were applied (to print).

    Raises:
        ValueError: Unknown recipe.
    """
    values = recipe_values(recipe)
    fields = dict(defaults or {})
    applied = {k: v for k, v in values.items() if k not in given}
    fields.update(applied)
    fields.update(given)
    fields["recipe"] = recipe
    return fields, applied


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
        ``recipe`` set), and the recipe values that were applied (to print). See
        :func:`resolve_fields`.
    """
    explicit = set(explicit)
    given = {k: v for k, v in options.items() if k in explicit}
    others = {k: v for k, v in options.items() if k not in explicit}
    return resolve_fields(given, recipe=name, defaults=others)
