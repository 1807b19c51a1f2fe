"""Networks: the frequency-disentangled network around any registered backbone."""

from __future__ import annotations

from fdseg_core.nn.fdnet import FUSIONS, FrequencyDisentangledNet

__all__ = ["FUSIONS", "FrequencyDisentangledNet"]
