"""Running an exported model with ONNX Runtime, as a drop-in predictor of PyTorch tensors."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fdseg_core.errors import InputError, MissingExtraError
from fdseg_core.export.metadata import METADATA_KEY
from fdseg_core.infer.card import ModelCard

__all__ = ["OnnxModel", "onnxruntime_available"]


def onnxruntime_available() -> str | None:
    """``None`` when ONNX Runtime is installed, else how to install it."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "running ONNX models needs onnxruntime: pip install 'fdseg[onnx]'"
    return None


class OnnxModel:
    """An exported fdseg model in ONNX Runtime, called like the PyTorch model.

    ``OnnxModel(path)(x)`` maps a float tensor ``(N, C, *spatial)`` to logits
    ``(N, K, *spatial)`` (a CPU float32 tensor). Inputs whose spatial sizes are not
    multiples of the model's size divisor are padded by edge replication and the
    logits cropped back, as :class:`~fdseg_core.nn.FrequencyDisentangledNet` does.

    Args:
        path: The ``.onnx`` file written by :func:`~fdseg_core.export.export_onnx`.
        providers: ONNX Runtime execution providers (default: the CPU provider).
        threads: Intra-op threads (``None``: ONNX Runtime's default).

    Attributes:
        meta: The file's ``fdseg.meta`` metadata (classes, normalisation, patch size,
            band parameters, ...), the same keys as ``load_model``'s info.

    Raises:
        ValueError: onnxruntime missing, or a file that is not a readable ONNX model.
        FileNotFoundError: No such file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        reason = onnxruntime_available()
        if reason is not None:
            raise MissingExtraError(reason, "onnx")
        import onnxruntime as ort  # lazy: the optional onnx extra

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} does not exist")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:
            raise InputError(f"{self.path} could not be loaded as an ONNX model: {exc}") from exc
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta: dict[str, Any] = json.loads(props.get(METADATA_KEY, "{}"))
        self.input_name = self.session.get_inputs()[0].name
        self.size_divisor = int(self.meta.get("size_divisor", 1))
        self.dynamic_spatial = bool(self.meta.get("dynamic_spatial", True))
        fixed = self.meta.get("example_shape")
        self.fixed_spatial = None if self.dynamic_spatial or not fixed else tuple(fixed[2:])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:])
        if self.fixed_spatial is not None and spatial != self.fixed_spatial:
            raise InputError(
                f"{self.path} takes inputs of spatial size {self.fixed_spatial} (fixed at "
                f"export), got {spatial}"
            )
        pad = [(-s) % self.size_divisor for s in spatial]
        x = x.detach().float().cpu()
        if any(pad):
            x = F.pad(x, [p for extra in reversed(pad) for p in (0, extra)], mode="replicate")
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x.numpy())})[0]
        logits = torch.from_numpy(out)
        if any(pad):
            logits = logits[(slice(None), slice(None), *(slice(0, s) for s in spatial))]
        return logits

    def card(self) -> ModelCard:
        """The model card the file records (for ``predict_cases``).

        Raises:
            InputError: The file was not exported by fdseg (no model card)."""
        return ModelCard.from_onnx_metadata(self.meta, str(self.path))
