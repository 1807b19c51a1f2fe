"""Post-processing of label maps: keep the largest connected component.

As nnU-Net's post-processing, per class: every connected component of a class but the
largest becomes background. Bilateral structures (a red nucleus on each side, stored as
one label) have two true components, so the rule can also act per class *and
hemisphere*: the largest component on each side of the mid-sagittal plane is kept.

The hemisphere of a voxel is the sign of its world left-right coordinate (RAS ``x``,
from the affine) relative to the volume's centre, so a case's orientation on disk does
not matter; a component belongs to the side that holds its centroid.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from fdseg_core.errors import InputError

__all__ = ["KEEP_LARGEST", "hemisphere_of_voxels", "keep_largest", "keep_largest_per_class"]

#: ``"class"``: the largest component of each class; ``"hemisphere"``: of each class on
#: each side of the mid-sagittal plane; ``"none"``: nothing removed.
KEEP_LARGEST: tuple[str, ...] = ("none", "class", "hemisphere")

#: 26-connectivity in 3D (every neighbour sharing a face, an edge or a corner).
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def _check(mode: str) -> str:
    if mode not in KEEP_LARGEST:
        raise InputError(f"keep-largest mode must be one of {list(KEEP_LARGEST)}, got {mode!r}")
    return mode


def hemisphere_of_voxels(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """``True`` for the voxels right of the volume's mid-sagittal plane (world ``x`` above
    the centre's), as an array of ``shape``."""
    grid = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world_x = affine[0, :3] @ grid + affine[0, 3]
    centre = affine[0, :3] @ ((np.asarray(shape, dtype=np.float64) - 1) / 2) + affine[0, 3]
    return (world_x > centre).reshape(shape)


def keep_largest(
    mask: np.ndarray, *, sides: np.ndarray | None = None, connectivity: np.ndarray | None = None
) -> np.ndarray:
    """The largest connected component of a boolean mask (per side, with ``sides``).

    Args:
        mask: Boolean ``(X, Y, Z)``.
        sides: Boolean ``(X, Y, Z)`` splitting the volume in two (the hemisphere of each
            voxel); ``None``: one largest component over the whole volume.
        connectivity: Structuring element (default: 26-connectivity).

    Returns:
        A boolean mask of the kept components.
    """
    structure = _CONNECTIVITY if connectivity is None else connectivity
    components, n = ndimage.label(mask, structure=structure)
    if n <= 1:
        return mask.astype(bool, copy=True)
    sizes = np.bincount(components.ravel())[1:]
    if sides is None:
        return components == (int(np.argmax(sizes)) + 1)
    index = np.arange(1, n + 1)
    right = np.asarray(ndimage.mean(sides, components, index)) > 0.5  # side of the centroid
    keep = np.zeros(n + 1, dtype=bool)
    for side in (False, True):
        on_side = np.flatnonzero(right == side)
        if on_side.size:
            keep[on_side[np.argmax(sizes[on_side])] + 1] = True
    return keep[components]


def keep_largest_per_class(
    labels: np.ndarray,
    modes: str | Mapping[int, str],
    *,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """Apply :func:`keep_largest` to every class of a label map.

    Args:
        labels: Integer ``(X, Y, Z)``.
        modes: One of :data:`KEEP_LARGEST` for every class, or per class value
            (classes not listed: ``"none"``).
        affine: The label map's affine (needed by ``"hemisphere"``; default: identity).

    Returns:
        A copy of ``labels`` with the removed components set to 0.
    """
    out = labels.copy()
    values = [int(v) for v in np.unique(labels) if v != 0]
    per_class = {v: modes for v in values} if isinstance(modes, str) else dict(modes)
    sides = None
    for value in values:
        mode = _check(per_class.get(value, "none"))
        if mode == "none":
            continue
        if mode == "hemisphere" and sides is None:
            sides = hemisphere_of_voxels(labels.shape, np.eye(4) if affine is None else affine)
        mask = labels == value
        kept = keep_largest(mask, sides=sides if mode == "hemisphere" else None)
        out[mask & ~kept] = 0
    return out
