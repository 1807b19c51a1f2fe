"""Hook specifications of fdseg: what a plugin may implement.

A plugin is any module or object with functions marked ``@fdseg_core.hookimpl``,
made known through the ``fdseg`` entry point group::

    [project.entry-points.fdseg]
    mynets = "mynets.plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from fdseg_core.plugins.spec import BackboneSpec

__all__ = ["hookspec", "fdseg_register_backbones", "fdseg_register_trainers"]

hookspec = pluggy.HookspecMarker("fdseg")


@hookspec
def fdseg_register_backbones() -> list[BackboneSpec]:
    """Return the backbones this plugin provides.

    Each :class:`~fdseg_core.plugins.BackboneSpec` names a builder
    ``builder(in_channels, out_channels, spatial_dims, **options) -> nn.Module``
    whose module maps ``(N, in_channels, *spatial)`` to logits
    ``(N, out_channels, *spatial)`` (no final activation) for every input whose
    spatial sizes are multiples of ``size_divisor``. Specs are validated on
    registration; the manager fills in the providing distribution and version.

    A spec may also declare ``fusion_points`` (``"stem"``, ``"decoder"``): places
    inside the network where frequency-disentangled models fuse the bands (early
    fusion at the backbone's own first features, late fusion at its last
    full-resolution decoder features, as the paper's models do). Each point adds
    methods the module must provide (:data:`fdseg_core.plugins.FUSION_POINTS`).

    Returns:
        A list of backbone specifications (an empty list is fine).
    """


@hookspec
def fdseg_register_trainers() -> list[type]:
    """Return the trainers this plugin provides.

    Each is a subclass of :class:`fdseg_core.train.trainer.Trainer` that overrides some
    of its stages (network initialisation, loss, optimiser, schedule, training step,
    validation); ``fdseg train --trainer NAME`` selects it by its ``name`` (its class
    name unless it sets one). A name fdseg or an earlier plugin uses is refused with a
    warning.

    Returns:
        A list of trainer classes (an empty list is fine).
    """
