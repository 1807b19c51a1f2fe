"""From logits to probabilities and labels, by the rule the model was trained with.

A model trained with a softmax loss (``dice_ce``) predicts the class of largest softmax
probability. A model trained with per-channel sigmoids (``sigmoid_dice``, the paper
code's loss) never sees a gradient on its background channel: that loss scores the
foreground channels only, so the background logit is an untrained read-out and must
not take part in the decision. Such a model predicts by the *sigmoid rule*, as
nnU-Net does for its region-based training: a sigmoid on each foreground channel;
the label is the foreground class of largest probability where that probability is
``>= 0.5``, else background.

Every path that reads a model's outputs (validation, experiment evaluation,
``fdseg predict`` with or without ONNX, sliding-window blending and flip TTA) goes
through :func:`probabilities` and :func:`labels_from_probabilities`.
"""

from __future__ import annotations

import numpy as np
import torch

from fdseg_core.choices import ACTIVATIONS
from fdseg_core.errors import InputError

__all__ = ["ACTIVATIONS", "SIGMOID_THRESHOLD", "check_activation", "labels_from_probabilities"]
__all__ += ["probabilities"]

#: A foreground probability at or above this makes a voxel foreground (sigmoid rule).
SIGMOID_THRESHOLD = 0.5


def check_activation(activation: str) -> str:
    """Return ``activation`` when it is a known rule.

    Raises:
        ValueError: Not one of :data:`ACTIVATIONS`.
    """
    if activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    return activation


def probabilities(logits: torch.Tensor, activation: str = "softmax") -> torch.Tensor:
    """Class probabilities of logits, channel ``k`` for class ``k`` (float32).

    Args:
        logits: ``(N, K, *spatial)``.
        activation: ``"softmax"``: a softmax over the ``K`` channels. ``"sigmoid"``: a
            sigmoid on each foreground channel ``1..K-1``; channel 0 is not read from
            the logits but set to ``1 - max_k p_k`` (the probability that the most
            likely foreground class is absent), so that the background logit, which
            a sigmoid loss never trains, cannot change any output.

    Returns:
        ``(N, K, *spatial)`` float32. Softmax rows sum to 1; sigmoid rows need not.

    Raises:
        ValueError: Unknown ``activation``, or ``"sigmoid"`` with fewer than 2 channels.
    """
    check_activation(activation)
    logits = logits.float()
    if activation == "softmax":
        return logits.softmax(1)
    if logits.shape[1] < 2:
        raise InputError(
            f"the sigmoid rule needs a background and a foreground channel, got "
            f"{logits.shape[1]} channel(s)"
        )
    fg = torch.sigmoid(logits[:, 1:])
    return torch.cat([1.0 - fg.amax(1, keepdim=True), fg], 1)


def labels_from_probabilities(
    probs: torch.Tensor | np.ndarray, activation: str = "softmax", *, dim: int = 1
) -> torch.Tensor | np.ndarray:
    """The label of every voxel from class probabilities (blended, averaged, resampled).

    Args:
        probs: Probabilities with the class axis at ``dim`` (``K`` channels, as
            :func:`probabilities` returns them); a tensor or a NumPy array.
        activation: ``"softmax"``: the class of largest probability (ties go to the
            lower class). ``"sigmoid"``: the foreground class of largest probability
            where that probability is ``>= 0.5``, else 0; channel 0 is ignored.
        dim: The class axis.

    Returns:
        Integer labels with the class axis removed (``int64``), of the input's kind.

    Raises:
        ValueError: Unknown ``activation``.
    """
    check_activation(activation)
    as_numpy = isinstance(probs, np.ndarray)
    p = torch.from_numpy(np.ascontiguousarray(probs)) if as_numpy else probs
    if activation == "softmax" or p.shape[dim] < 2:
        labels = p.argmax(dim)
    else:
        best, index = p.narrow(dim, 1, p.shape[dim] - 1).max(dim)
        labels = torch.where(best >= SIGMOID_THRESHOLD, index + 1, torch.zeros_like(index))
    return labels.numpy() if as_numpy else labels
