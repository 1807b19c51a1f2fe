"""Sliding-window inference with Gaussian importance weighting and flip test-time augmentation."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fdseg_core.choices import DEFAULT_OVERLAP, DEFAULT_WINDOW_BATCH
from fdseg_core.errors import InputError
from fdseg_core.infer.activation import check_activation, probabilities

__all__ = [
    "InferenceStopped",
    "gaussian_importance",
    "sliding_window_inference",
    "tta_passes",
    "window_starts",
]


class InferenceStopped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised between two batches of windows when ``should_stop`` asked for it (a signal
    arrived): whatever was being predicted is dropped, and the caller decides what
    to save."""


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start offsets covering ``size`` with windows of ``patch`` overlapping by ``overlap``.

    nnU-Net's placement: the fewest windows whose step is at most
    ``int(patch * (1 - overlap))``, spread evenly from ``0`` to ``size - patch``. MONAI
    steps by exactly ``int(patch * (1 - overlap))`` and clamps the last window to the
    end; both give the same starts when ``size - patch`` is a multiple of that step.
    """
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    n = int(np.ceil((size - patch) / step)) + 1
    return [int(round(v)) for v in np.linspace(0, size - patch, n)]


@lru_cache(maxsize=16)
def _gaussian(patch: tuple[int, ...], sigma_scale: float) -> torch.Tensor:
    axes = [torch.arange(p, dtype=torch.float64) - (p - 1) / 2 for p in patch]
    grid = torch.meshgrid(*axes, indexing="ij")
    sq = sum((g / max(p * sigma_scale, 1e-6)) ** 2 for g, p in zip(grid, patch, strict=True))
    w = torch.exp(-0.5 * sq)
    w = w / w.max()
    return w.clamp(min=1e-3).float()


def gaussian_importance(patch: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """The importance map: a Gaussian of std ``sigma_scale * patch`` per axis.

    fdseg centres it at ``(p - 1) / 2`` (the exact middle of the patch), evaluates it in
    closed form, scales it to a maximum of 1 and floors it at 1e-3 so that the corners
    of a window still count. That is MONAI's ``compute_importance_map`` (centre
    ``(p - 1) / 2``, floor 1e-3; MONAI does not rescale, which changes its weights only
    for even sizes, where its maximum lies between voxels). nnU-Net differs: it centres
    the Gaussian at ``p // 2`` (half a voxel off the middle for even sizes), builds it
    with ``scipy.ndimage.gaussian_filter`` on a delta (truncated at 4 sigma), scales it
    to a maximum of 1 and replaces exact zeros by the smallest non-zero value instead of
    a floor. ``tests/core/infer/test_sliding_window_peers.py`` compares fdseg with MONAI.

    Args:
        patch: Window size, one per spatial dim.
        sigma_scale: Standard deviation relative to the window size.

    Returns:
        float32 tensor shaped ``patch`` (cached; do not modify it in place).
    """
    return _gaussian(tuple(int(p) for p in patch), float(sigma_scale))


def _flip_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every combination of flips of these spatial axes, as tensor dims (axis + 2)."""
    dims = [2 + a for a in axes]
    return [c for r in range(len(dims) + 1) for c in itertools.combinations(dims, r)]


def tta_passes(n_axes: int) -> int:
    """Forward passes per window with flip test-time augmentation over ``n_axes`` spatial
    axes: every combination of their flips, ``2 ** n_axes`` (8 over the 3 axes of a
    volume), so TTA costs about that many times the time of a prediction without it."""
    return 2**n_axes


@torch.no_grad()
def sliding_window_inference(
    volume: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    patch_size: Sequence[int],
    *,
    overlap: float = DEFAULT_OVERLAP,
    gaussian: bool = True,
    sigma_scale: float = 0.125,
    batch_size: int = DEFAULT_WINDOW_BATCH,
    tta_flips: bool | Sequence[int] = False,
    device: torch.device | str | None = None,
    progress: bool = False,
    activation: str = "softmax",
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Class probabilities of a whole volume, predicted patch by patch.

    The volume is zero-padded (centred) where smaller than the patch; windows overlap
    by ``overlap``; each window's probabilities (``activation``: a softmax, or the
    sigmoid rule of a sigmoid-trained model, :func:`~fdseg_core.infer.activation.probabilities`)
    are weighted by a Gaussian
    importance map (or uniformly) and the weighted sum is normalised. When the padded
    volume is a single window (a model trained on whole volumes, ``patch_size`` its
    training shape) there is no tiling: the volume is predicted in one pass, at the
    shape the model was trained on. With ``tta_flips`` every combination of flips of
    the given axes (8 for the 3 axes of a volume) is predicted and the probabilities
    averaged (flipped back).

    Args:
        volume: ``(N, C, *spatial)``, 2 or 3 spatial dims.
        predictor: Maps ``(B, C, *patch)`` to logits ``(B, K, *patch)``.
        patch_size: Window size, one per spatial dim.
        overlap: Fraction of overlap between neighbouring windows, in ``[0, 1)``.
        gaussian: Gaussian importance weighting (else uniform).
        sigma_scale: Std of the Gaussian relative to the patch size.
        batch_size: Windows per predictor call (MONAI's ``sw_batch_size``). The windows
            are independent, so it changes the time and the memory, not the result
            (up to float rounding).
        tta_flips: Flip test-time augmentation: the spatial axes to flip (0 for the
            first spatial axis), ``True`` for every axis, ``False`` or ``()`` for none.
            Flip only along axes the model was trained to be invariant to (its training
            flips): a model that never saw a flipped image may fail on one.
        device: Where the predictor runs (default: the volume's device); results are
            accumulated on the volume's device.
        progress: Show a progress bar over windows.
        activation: ``"softmax"`` or ``"sigmoid"``, as the model was trained
            (:data:`fdseg_core.choices.LOSS_ACTIVATION`); the labels then follow from
            :func:`~fdseg_core.infer.activation.labels_from_probabilities` with the
            same activation.
        should_stop: Asked after every batch of windows; when it says so,
            :class:`InferenceStopped` is raised there (a preempted job stops within one
            batch, not after the volume).

    Returns:
        Probabilities ``(N, K, *spatial)`` (float32).

    Raises:
        InferenceStopped: ``should_stop`` asked for it.
    """
    check_activation(activation)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    if volume.ndim not in (4, 5):
        raise InputError(f"volume must be (N, C, *spatial), got shape {tuple(volume.shape)}")
    nd = volume.ndim - 2
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != nd or min(patch) < 1:
        raise InputError(f"patch_size must be {nd} positive sizes, got {patch_size}")
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"overlap must lie in [0, 1), got {overlap}")
    device = torch.device(device) if device is not None else volume.device
    spatial = volume.shape[2:]
    pad = [max(0, p - s) for p, s in zip(patch, spatial, strict=True)]
    if any(pad):
        flat = [v for extra in reversed(pad) for v in (extra // 2, extra - extra // 2)]
        volume = F.pad(volume, flat)
    padded = volume.shape[2:]
    starts = list(
        itertools.product(
            *[window_starts(s, p, overlap) for s, p in zip(padded, patch, strict=True)]
        )
    )
    if tta_flips is True:
        axes: tuple[int, ...] = tuple(range(nd))
    elif tta_flips is False:
        axes = ()
    else:
        axes = tuple(int(a) for a in tta_flips)
        if any(not 0 <= a < nd for a in axes) or len(set(axes)) != len(axes):
            raise InputError(f"tta_flips must be distinct spatial axes < {nd}, got {tta_flips}")
    flips = _flip_sets(axes)
    crop = tuple(slice(e // 2, e // 2 + s) for e, s in zip(pad, spatial, strict=True))
    if len(starts) == 1:  # one window holds the whole volume: no tiling, no weights
        whole = torch.cat(
            [
                _window_probs(volume[n : n + 1], predictor, flips, device, activation)
                for n in range(len(volume))
            ]
        ).to(volume.device)
        return whole[(slice(None), slice(None), *crop)]
    weight = gaussian_importance(patch, sigma_scale) if gaussian else torch.ones(patch)
    weight = weight.to(volume.device)
    acc = norm = None
    for n in range(volume.shape[0]):
        for i in tqdm(
            range(0, len(starts), batch_size),
            disable=not progress,
            leave=False,
            desc="sliding window",
        ):
            chunk = starts[i : i + batch_size]
            windows = torch.stack(
                [
                    volume[
                        (n, slice(None), *(slice(s, s + p) for s, p in zip(st, patch, strict=True)))
                    ]
                    for st in chunk
                ]
            )
            probs = _window_probs(windows, predictor, flips, device, activation).to(volume.device)
            if should_stop is not None and should_stop():
                raise InferenceStopped
            if acc is None:
                k = probs.shape[1]
                acc = volume.new_zeros((volume.shape[0], k, *padded), dtype=torch.float32)
                norm = volume.new_zeros(padded, dtype=torch.float32)
            for j, st in enumerate(chunk):
                region = tuple(slice(s, s + p) for s, p in zip(st, patch, strict=True))
                acc[(n, slice(None), *region)] += probs[j] * weight
                if n == 0:
                    norm[region] += weight
    out = acc / norm
    return out[(slice(None), slice(None), *crop)]


def _window_probs(
    windows: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    flips: list[tuple[int, ...]],
    device: torch.device,
    activation: str,
) -> torch.Tensor:
    """Probabilities of a batch of windows, averaged over the flips (float32)."""
    windows = windows.to(device)
    probs = 0
    for axes in flips:
        x = windows.flip(axes) if axes else windows
        p = probabilities(predictor(x), activation)
        probs = probs + (p.flip(axes) if axes else p)
    return probs / len(flips)
