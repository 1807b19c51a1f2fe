"""Options of the QSM phantom and the label values they give (shared by the analytic
phantom, :mod:`fdseg_core.phantom.qsm`, and the atlas-driven one,
:mod:`fdseg_core.phantom.atlas`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fdseg_core.errors import InputError

__all__ = ["LABELLED", "PhantomConfig", "label_names"]

#: Label key -> the structure it labels.
LABELLED = {
    "rn": "red_nucleus",
    "dn": "dentate_nucleus",
    "sn": "substantia_nigra",
    "stn": "subthalamic_nucleus",
}


@dataclass(frozen=True)
class PhantomConfig:
    """Options of the phantom.

    Attributes:
        shape: Grid ``(X, Y, Z)`` (default 160 x 160 x 128).
        spacing: Voxel size in mm (a number or three).
        labels: Labelled structures in order, from ``rn`` (red nucleus), ``dn`` (dentate
            nucleus), ``sn`` (substantia nigra), ``stn`` (subthalamic nucleus).
        split_hemispheres: Separate left and right labels (``rn_left``, ``rn_right``...).
        dipole: Apply the dipole forward model and a thresholded k-space division
            inversion (streaking as in real QSM).
        noise: Standard deviation of the Gaussian noise (ppm).
        texture: Amplitude of smooth tissue texture (ppm).
        deformation_mm: Amplitude of the smooth random deformation (mm).
        size_jitter: Relative per-structure size variation.
        position_jitter_mm: Per-structure position variation (mm).
        tkd_threshold: Threshold of the k-space division.
        atlas: Real anatomy from the MNI152 2009c template and the CIT168 atlas
            (:mod:`fdseg_core.phantom.atlas`; labels from ``rn``, ``sn``, ``stn``).
    """

    shape: tuple[int, int, int] = (160, 160, 128)
    spacing: float | tuple[float, float, float] = 1.0
    labels: tuple[str, ...] = ("rn", "dn")
    split_hemispheres: bool = False
    dipole: bool = True
    noise: float = 0.002
    texture: float = 0.008
    deformation_mm: float = 2.0
    size_jitter: float = 0.08
    position_jitter_mm: float = 1.5
    tkd_threshold: float = 0.1
    atlas: bool = False

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        if len(shape) != 3 or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 8 for s in shape
        ):
            raise InputError(f"shape must be 3 integers >= 8, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        sp = self.spacing
        sp = (float(sp),) * 3 if isinstance(sp, int | float) else tuple(float(s) for s in sp)
        if len(sp) != 3 or min(sp) <= 0:
            raise InputError(
                f"spacing must be positive (one or three values), got {self.spacing!r}"
            )
        object.__setattr__(self, "spacing", sp)
        labels = tuple(self.labels)
        bad = [lab for lab in labels if lab not in LABELLED]
        if not labels or bad or len(set(labels)) != len(labels):
            raise InputError(
                f"labels must be distinct names from {list(LABELLED)}, got {list(labels)!r}"
            )
        object.__setattr__(self, "labels", labels)
        if self.atlas and "dn" in labels:
            raise InputError(
                "the atlas phantom has no dentate nucleus (CIT168 is subcortical): "
                "use labels from rn, sn, stn"
            )
        for name in ("noise", "texture", "deformation_mm", "size_jitter", "position_jitter_mm"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.tkd_threshold < 1:
            raise InputError(f"tkd_threshold must lie in (0, 1), got {self.tkd_threshold!r}")

    @property
    def affine(self) -> np.ndarray:
        """RAS affine with the grid centred on the origin."""
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(self.shape, self.spacing, strict=True)]
        return aff


def label_names(config: PhantomConfig) -> dict[str, int]:
    """Label name -> value of a configuration (``background`` is 0)."""
    out = {"background": 0}
    for key in config.labels:
        base = LABELLED[key]
        if config.split_hemispheres:
            out[f"{base}_left"] = len(out)
            out[f"{base}_right"] = len(out)
        else:
            out[base] = len(out)
    return out
