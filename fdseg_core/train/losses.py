"""Segmentation losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fdseg_core.errors import InputError

__all__ = [
    "DiceCELoss",
    "DiceFocalLoss",
    "SigmoidDiceLoss",
    "build_loss",
    "focal_loss",
    "soft_dice_per_class",
]


def _check_shapes(logits: torch.Tensor, target: torch.Tensor) -> None:
    """Logits ``(N, K, *spatial)`` and labels ``(N, *spatial)`` of one batch and grid.

    Raises:
        InputError: They do not match.
    """
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise InputError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match"
        )


def soft_dice_per_class(
    probs: torch.Tensor, target: torch.Tensor, *, smooth: float = 1e-5
) -> torch.Tensor:
    """Batch soft Dice of each class.

    Args:
        probs: Class probabilities ``(N, K, *spatial)``.
        target: Integer labels ``(N, *spatial)`` with values in ``[0, K)``.
        smooth: Added to numerator and denominator.

    Returns:
        Tensor ``(K,)``: Dice of each class over the whole batch (nnU-Net's "batch Dice").
    """
    num_classes = probs.shape[1]
    onehot = F.one_hot(target.long(), num_classes).movedim(-1, 1).to(probs.dtype)
    reduce = (0, *range(2, probs.ndim))
    inter = (probs * onehot).sum(reduce)
    denom = probs.sum(reduce) + onehot.sum(reduce)
    return (2 * inter + smooth) / (denom + smooth)


class DiceCELoss(nn.Module):
    """Soft Dice (foreground classes) plus cross-entropy, as nnU-Net trains.

    Args:
        dice_weight: Weight of the Dice term.
        ce_weight: Weight of the cross-entropy term.
        include_background: Whether the background class enters the Dice term.

    Raises:
        ValueError: Negative weights, or both zero.
    """

    def __init__(
        self, *, dice_weight: float = 1.0, ce_weight: float = 1.0, include_background: bool = False
    ) -> None:
        super().__init__()
        if dice_weight < 0 or ce_weight < 0 or dice_weight + ce_weight == 0:
            raise InputError(
                f"weights must be >= 0 and not both 0, got dice_weight={dice_weight} and "
                f"{ce_weight} for the voxel term"
            )
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.include_background = include_background

    def voxel_term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The per-voxel term, averaged: the cross-entropy (a subclass may change it)."""
        return F.cross_entropy(logits, target.long())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of logits ``(N, K, *spatial)`` against labels ``(N, *spatial)``."""
        _check_shapes(logits, target)
        logits = logits.float()
        ce = self.voxel_term(logits, target)
        dice = soft_dice_per_class(logits.softmax(1), target)
        if not self.include_background and dice.numel() > 1:
            dice = dice[1:]
        return self.ce_weight * ce + self.dice_weight * (1.0 - dice.mean())


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0) -> torch.Tensor:
    """The focal loss (Lin et al. 2017) on softmax probabilities, the mean over voxels
    of ``-(1 - p_t)^gamma log p_t`` (``p_t``: the probability of the voxel's class);
    ``gamma = 0`` is the cross-entropy.

    Args:
        logits: ``(N, K, *spatial)``.
        target: Integer labels ``(N, *spatial)`` in ``[0, K)``.
        gamma: The focusing exponent (>= 0).

    Returns:
        A 0-dim tensor.
    """
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, target.long().unsqueeze(1))
    return (-((1.0 - log_p.exp()) ** gamma) * log_p).mean()


class DiceFocalLoss(DiceCELoss):
    """Soft Dice (foreground classes, batch Dice) plus the focal loss on softmax
    probabilities (:func:`focal_loss`): :class:`DiceCELoss` with its cross-entropy term's
    well-classified voxels down-weighted, for small structures in large backgrounds.
    Trains the softmax rule (argmax).

    Args:
        gamma: The focal exponent (>= 0; 0 gives :class:`DiceCELoss`).
        dice_weight: Weight of the Dice term.
        focal_weight: Weight of the focal term.

    Raises:
        ValueError: Negative ``gamma`` or weights, or both weights zero.
    """

    def __init__(
        self, *, gamma: float = 2.0, dice_weight: float = 1.0, focal_weight: float = 1.0
    ) -> None:
        if gamma < 0:
            raise InputError(f"gamma must be >= 0, got {gamma}")
        super().__init__(dice_weight=dice_weight, ce_weight=focal_weight)
        self.gamma = gamma

    def voxel_term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The focal loss of the voxels (:func:`focal_loss`)."""
        return focal_loss(logits, target, gamma=self.gamma)


class SigmoidDiceLoss(nn.Module):
    """The Dice loss of the paper's public code (``lib/losses3D``, after wolny's
    pytorch-3dunet): a sigmoid on every channel of the logits (not a softmax), the
    V-Net Dice of each channel over the whole batch with a squared denominator,
    ``2 sum(p t) / max(sum(p^2) + sum(t^2), eps)``, and ``1 -`` its mean over the
    foreground channels.

    Args:
        eps: Lower clamp of the denominator (the code: 1e-6).

    Raises:
        ValueError: ``eps`` not positive.
    """

    def __init__(self, *, eps: float = 1e-6) -> None:
        super().__init__()
        if not eps > 0:
            raise InputError(f"eps must be positive, got {eps!r}")
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of logits ``(N, K, *spatial)`` against labels ``(N, *spatial)``, ``K >= 2``."""
        _check_shapes(logits, target)
        if logits.shape[1] < 2:
            raise InputError(f"need a background and a foreground channel, got {logits.shape[1]}")
        k = logits.shape[1]
        probs = torch.sigmoid(logits.float()).movedim(1, 0).reshape(k, -1)
        onehot = F.one_hot(target.long(), k).movedim(-1, 0).reshape(k, -1).to(probs.dtype)
        inter = (probs * onehot).sum(-1)
        denom = (probs * probs).sum(-1) + (onehot * onehot).sum(-1)
        dice = 2 * inter / denom.clamp(min=self.eps)
        return 1.0 - dice[1:].mean()


def build_loss(name: str) -> nn.Module:
    """The loss a config names: ``"dice_ce"`` or ``"sigmoid_dice"``.

    Raises:
        ValueError: Unknown name.
    """
    if name == "dice_ce":
        return DiceCELoss()
    if name == "sigmoid_dice":
        return SigmoidDiceLoss()
    raise InputError(f"unknown loss {name!r}; expected 'dice_ce' or 'sigmoid_dice'")
