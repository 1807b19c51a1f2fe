"""Deployment: ONNX export of (frequency-disentangled) models and an ONNX Runtime
predictor (needs the ``onnx`` extra: ``pip install 'fdseg[onnx]'``)."""

from __future__ import annotations

from fdseg_core.export.metadata import METADATA_KEY, checkpoint_metadata
from fdseg_core.export.onnx import ExportResult, export_checkpoint, export_onnx, onnx_available
from fdseg_core.export.runtime import OnnxModel, onnxruntime_available

__all__ = [
    "METADATA_KEY",
    "ExportResult",
    "OnnxModel",
    "checkpoint_metadata",
    "export_checkpoint",
    "export_onnx",
    "onnx_available",
    "onnxruntime_available",
]
