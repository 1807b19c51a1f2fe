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

__all__ = ["hookspec", "fdseg_register_backbones"]

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

    Returns:
        A list of backbone specifications (an empty list is fine).
    """
