"""Inference: sliding window with Gaussian weighting and flip TTA, prediction writing,
overlays."""

from __future__ import annotations

from fdseg_core.infer.activation import (
    SIGMOID_THRESHOLD,
    labels_from_probabilities,
    probabilities,
)
from fdseg_core.infer.card import ModelCard
from fdseg_core.infer.overlay import render_overlay
from fdseg_core.infer.postprocess import KEEP_LARGEST, keep_largest_per_class
from fdseg_core.infer.predict import (
    check_ensemble,
    gather_inputs,
    predict_cases,
    predict_ensemble,
    tta_axes,
)
from fdseg_core.infer.sliding_window import (
    InferenceStopped,
    gaussian_importance,
    sliding_window_inference,
    window_starts,
)

__all__ = [
    "InferenceStopped",
    "KEEP_LARGEST",
    "ModelCard",
    "check_ensemble",
    "keep_largest_per_class",
    "predict_ensemble",
    "SIGMOID_THRESHOLD",
    "labels_from_probabilities",
    "probabilities",
    "gather_inputs",
    "gaussian_importance",
    "predict_cases",
    "render_overlay",
    "sliding_window_inference",
    "tta_axes",
    "window_starts",
]
