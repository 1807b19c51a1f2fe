"""Backbones as pluggy plugins.

Third-party packages register backbones through the ``fdseg`` entry point group::

    from fdseg_core import BackboneSpec, hookimpl

    @hookimpl
    def fdseg_register_backbones():
        return [BackboneSpec(name="mynet", builder=build_mynet, spatial_dims=(2, 3),
                             size_divisor=16, description="one line")]
"""

from __future__ import annotations

import pluggy

from fdseg_core.plugins.manager import (
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    FdsegPluginWarning,
    build_backbone,
    get_backbone,
    get_plugin_manager,
    list_backbones,
    reset_plugin_manager,
)
from fdseg_core.plugins.spec import (
    FUSION_POINTS,
    BackboneBuilder,
    BackboneSpec,
    check_fusion_point,
)

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "FUSION_POINTS",
    "BackboneBuilder",
    "BackboneSpec",
    "FdsegPluginWarning",
    "build_backbone",
    "check_fusion_point",
    "get_backbone",
    "get_plugin_manager",
    "hookimpl",
    "list_backbones",
    "reset_plugin_manager",
]

#: Marks a plugin function as an implementation of an fdseg hook.
hookimpl = pluggy.HookimplMarker("fdseg")
