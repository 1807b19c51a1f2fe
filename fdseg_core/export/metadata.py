"""What an exported ONNX file records about its model: the metadata key and its content.

Both the exporter (:mod:`fdseg_core.export.onnx`) and the predictor
(:mod:`fdseg_core.export.runtime`) use it; it imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fdseg_core import __version__

__all__ = ["METADATA_KEY", "checkpoint_metadata"]

#: Metadata key holding the JSON of everything inference needs (``meta`` of a checkpoint).
METADATA_KEY = "fdseg.meta"

#: Keys of ``load_model``'s meta copied as they are.
_META_KEYS = (
    "in_channels",
    "num_classes",
    "labels",
    "channel_names",
    "normalization",
    "target_spacing",
    "spacing",
    "patch_size",
    "bands",
    "activation",
    "flip_axes",
)
#: Keys of the training configuration copied as they are.
_CONFIG_KEYS = ("backbone", "fusion", "beta", "layout", "dims", "fusion_at", "loss")


def checkpoint_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What an exported file records about its model, from ``load_model``'s meta: the
    classes, the input pipeline (normalisation, spacing, patch size, pipeline bands),
    the activation (how its logits become labels) and the loss it was trained with,
    the band parameters and the fdseg version."""
    config = meta["config"]
    recorded = {k: meta.get(k) for k in _META_KEYS}
    recorded["classes"] = dict(meta["labels"])
    for key in _CONFIG_KEYS:
        recorded[key] = config.get(key)
    recorded["fdseg_version"] = __version__
    return recorded
