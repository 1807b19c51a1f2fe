"""What an exported ONNX file records about its model: the metadata key and its content.

Both the exporter (:mod:`fdseg_core.export.onnx`) and the predictor
(:mod:`fdseg_core.export.runtime`) use it; it imports neither.
"""

from __future__ import annotations

from typing import Any

from fdseg_core import __version__
from fdseg_core.infer.card import ModelCard

__all__ = ["METADATA_KEY", "checkpoint_metadata"]

#: Metadata key holding the JSON of everything inference needs (the model card).
METADATA_KEY = "fdseg.meta"


def checkpoint_metadata(card: ModelCard) -> dict[str, Any]:
    """What an exported file records about its model: its
    :class:`~fdseg_core.infer.card.ModelCard` (the classes, the input pipeline, the
    window, the activation, the flips of its training, the network and loss) and the
    fdseg version (:meth:`~fdseg_core.infer.card.ModelCard.to_onnx_metadata`)."""
    return card.to_onnx_metadata(__version__)
