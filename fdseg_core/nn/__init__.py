"""Networks: the frequency-disentangled network around any registered backbone, and the
fusion points of nnU-Net's planned U-Nets."""

from __future__ import annotations

from fdseg_core.nn.fdnet import FUSIONS, FrequencyDisentangledNet
from fdseg_core.nn.planned_unet import PLANNED_ARCHITECTURES, PlannedUNet, planned_unet_supported

__all__ = [
    "FUSIONS",
    "PLANNED_ARCHITECTURES",
    "FrequencyDisentangledNet",
    "PlannedUNet",
    "planned_unet_supported",
]
