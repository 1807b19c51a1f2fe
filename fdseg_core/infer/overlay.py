"""PNG overlays of a segmentation on its image: three orthogonal slices through the
structures, in anatomical planes whatever the order the arrays were stored in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fdseg_core.atomic import atomic_save_figure
from fdseg_core.errors import InputError

__all__ = ["CONVENTION", "canonical", "render_overlay"]

#: How the panels show a canonical (RAS) volume; written on every figure.
CONVENTION = (
    "neurological convention: the subject's right on the right, anterior up (axial), "
    "superior up (coronal, sagittal)"
)

_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]


def canonical(
    array: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """``array`` turned to the closest canonical orientation (RAS: axis 0 towards the
    subject's right, 1 anterior, 2 superior), as nibabel's ``as_closest_canonical``
    does, with its new affine and voxel size (flips and axis swaps only; no
    resampling)."""
    ornt = nib.orientations.io_orientation(affine)
    turned = nib.orientations.apply_orientation(array, ornt)
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, array.shape)
    spacing = tuple(float(v) for v in np.linalg.norm(new_affine[:3, :3], axis=0))
    return turned, new_affine, spacing  # type: ignore[return-value]


def render_overlay(
    image: np.ndarray,
    label: np.ndarray,
    path: str | Path,
    *,
    labels: Mapping[str, int] | None = None,
    title: str | None = None,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    window: tuple[float, float] | None = None,
    affine: np.ndarray | None = None,
) -> Path:
    """Axial, coronal and sagittal slices, each the one that holds the most labelled
    voxels (the volume centre when the label is empty); image in grey, classes as
    coloured fills and contours.

    With ``affine``, the volume is first turned to the closest canonical orientation
    (:func:`canonical`), so that each panel shows the anatomical plane its title names,
    in the convention the figure states (:data:`CONVENTION`), with the voxel aspect kept;
    a volume stored in any axis order gives the same picture. Without it, the arrays are
    taken to be RAS already.

    Args:
        image: ``(X, Y, Z)`` intensities.
        label: ``(X, Y, Z)`` integer labels on the same grid.
        path: PNG to write (atomically).
        labels: Class name -> value for the legend (default: the values found).
        title: Figure title.
        spacing: Voxel size, for the aspect ratio of each slice (from ``affine`` when
            given).
        window: Grey-level window (default: the 1st and 99th percentiles).
        affine: The voxel-to-world matrix of both arrays.
    """
    if image.shape != label.shape or image.ndim != 3:
        raise InputError(f"image {image.shape} and label {label.shape} must be equal 3D shapes")
    if affine is not None:
        image, _, spacing = canonical(np.asarray(image), np.asarray(affine, dtype=float))
        label, _, _ = canonical(np.asarray(label), np.asarray(affine, dtype=float))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fg = label > 0
    if fg.any():
        centre = [
            int(np.argmax(fg.sum(axis=tuple(a for a in range(3) if a != i)))) for i in range(3)
        ]
    else:
        centre = [s // 2 for s in image.shape]
    names = dict(labels) if labels else {str(v): int(v) for v in np.unique(label) if v}
    values = [v for v in names.values() if v != 0]
    lo, hi = window if window is not None else np.percentile(image, [1, 99])
    views = [
        (
            f"axial (slice {centre[2]} from inferior)",
            image[:, :, centre[2]],
            label[:, :, centre[2]],
            spacing[1] / spacing[0],
        ),
        (
            f"coronal (slice {centre[1]} from posterior)",
            image[:, centre[1], :],
            label[:, centre[1], :],
            spacing[2] / spacing[0],
        ),
        (
            f"sagittal (slice {centre[0]} from left)",
            image[centre[0], :, :],
            label[centre[0], :, :],
            spacing[2] / spacing[1],
        ),
    ]
    fig = Figure(figsize=(13, 4.8))  # no pyplot: no GUI backend, no global figure registry
    axes = fig.subplots(1, 3)
    for ax, (name, img, lab, aspect) in zip(axes, views, strict=True):
        ax.imshow(img.T, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspect)
        for i, v in enumerate(sorted(values)):
            mask = (lab == v).T
            if mask.any():
                colour = _COLOURS[i % len(_COLOURS)]
                ax.imshow(
                    np.ma.masked_where(~mask, mask),
                    cmap=ListedColormap([colour]),
                    alpha=0.35,
                    origin="lower",
                    aspect=aspect,
                    interpolation="nearest",
                )
                ax.contour(mask, levels=[0.5], colors=[colour], linewidths=1.0)
        ax.set_title(name)
        ax.axis("off")
    handles = [
        Patch(color=_COLOURS[i % len(_COLOURS)], label=n)
        for i, (n, v) in enumerate(
            sorted(((n, v) for n, v in names.items() if v), key=lambda kv: kv[1])
        )
    ]
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            bbox_to_anchor=(0.5, 0.03),
            ncol=min(len(handles), 8),
            frameon=False,
        )
    if title:
        fig.suptitle(title)
    fig.text(0.5, 0.005, CONVENTION, ha="center", va="bottom", fontsize=8, color="0.35")
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return atomic_save_figure(fig, path, dpi=90)
