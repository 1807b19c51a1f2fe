"""Per-case intensity normalisation and optional resampling (the same code at training and
inference time)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from fdseg_core.bands import band_split
from fdseg_core.choices import DEFAULT_BAND_DIMS
from fdseg_core.data.io import LoadedCase, load_case
from fdseg_core.data.layout import Case, DatasetInfo
from fdseg_core.errors import InputError

__all__ = [
    "NORMALIZATIONS",
    "VolumeBands",
    "Volume",
    "Preprocessor",
    "default_normalization",
    "normalize",
    "resample",
    "volume_bands",
]

NORMALIZATIONS = ("qsm", "ct", "zscore", "none")
#: CT window (HU) of the "ct" normalisation.
CT_WINDOW = (-1000.0, 1000.0)
#: Percentiles of the robust clipping of the "qsm" normalisation.
QSM_PERCENTILES = (0.5, 99.5)


def default_normalization(info: DatasetInfo) -> tuple[str, ...]:
    """One scheme per channel from its name: QSM -> qsm, CT -> ct, anything else -> zscore."""
    out = []
    for name in info.channel_names:
        key = name.strip().lower()
        out.append("qsm" if "qsm" in key or "suscept" in key else "ct" if key == "ct" else "zscore")
    return tuple(out)


def normalize(channel: np.ndarray, scheme: str) -> np.ndarray:
    """Normalise one channel ``(X, Y, Z)``.

    * ``qsm``: signed susceptibility maps, masked with zeros outside the brain: clip to
      the 0.5 / 99.5 percentiles of the non-zero voxels, then z-score with their mean and
      standard deviation; voxels outside the mask stay 0.
    * ``ct``: clip to the window -1000..1000 HU, then scale to [-1, 1].
    * ``zscore``: z-score over the whole volume.
    * ``none``: unchanged.

    Raises:
        ValueError: Unknown scheme.
    """
    x = channel.astype(np.float32, copy=True)
    if scheme == "none":
        return x
    if scheme == "ct":
        lo, hi = CT_WINDOW
        return (np.clip(x, lo, hi) - (lo + hi) / 2) / ((hi - lo) / 2)
    if scheme == "zscore":
        return (x - x.mean()) / max(float(x.std()), 1e-8)
    if scheme == "qsm":
        mask = x != 0
        if mask.sum() < 2:
            return x
        lo, hi = np.percentile(x[mask], QSM_PERCENTILES)
        x[mask] = np.clip(x[mask], lo, hi)
        mean, std = float(x[mask].mean()), max(float(x[mask].std()), 1e-8)
        x[mask] = (x[mask] - mean) / std
        return x
    raise InputError(f"unknown normalisation {scheme!r}; expected one of {list(NORMALIZATIONS)}")


def resample(
    array: np.ndarray,
    spacing: Sequence[float],
    target: Sequence[float],
    *,
    order: int,
    shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Resample the last three axes from ``spacing`` to ``target`` mm with scipy.ndimage.

    Args:
        array: ``(X, Y, Z)`` or ``(C, X, Y, Z)``.
        spacing: Current voxel size.
        target: Wanted voxel size.
        order: Spline order (3 for images, 1 for probabilities, 0 for labels).
        shape: Exact output shape of the spatial axes (for the inverse resampling).
    """
    spatial = array.shape[-3:]
    if shape is None:
        shape = tuple(
            max(1, int(round(s * sp / t)))
            for s, sp, t in zip(spatial, spacing, target, strict=True)
        )
    if tuple(shape) == tuple(spatial):
        return array
    zoom = [o / i for o, i in zip(shape, spatial, strict=True)]
    if array.ndim == 3:
        out = ndimage.zoom(array, zoom, order=order, mode="nearest", grid_mode=True)
    else:
        out = np.stack(
            [ndimage.zoom(c, zoom, order=order, mode="nearest", grid_mode=True) for c in array]
        )
    return out[..., : shape[0], : shape[1], : shape[2]]


@dataclass(frozen=True)
class VolumeBands:
    """A band split done once per whole volume in the data pipeline.

    Attributes:
        beta: Relative width of the low band.
        dims: Band dims of the model's ``(N, C, *spatial)`` input (``(2, 3)``: X and Y).
    """

    beta: float
    dims: tuple[int, ...] = DEFAULT_BAND_DIMS

    def __post_init__(self) -> None:
        if not 0.0 < float(self.beta) < 1.0:
            raise InputError(f"band beta must lie in (0, 1), got {self.beta!r}")
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))

    def as_dict(self) -> dict:
        return {"beta": float(self.beta), "dims": list(self.dims)}


def volume_bands(image: np.ndarray, bands: VolumeBands) -> np.ndarray:
    """The centred band split of a whole volume, as channels ``[U(low), high]``.

    ``U(low) = x - high`` is the low band brought back to the full grid (the
    band-limited part of the volume); cropping it and ``high`` at the same window keeps
    both bands of the *volume* in every patch. The model averages ``U(low)`` onto the
    patch's band grid (``FrequencyDisentangledNet(input_bands="volume")``).

    Args:
        image: ``(C, X, Y, Z)`` float32.
        bands: The split's ``beta`` and dims.

    Returns:
        ``(2C, X, Y, Z)`` float32: the C low-band channels, then the C high-band ones.

    Raises:
        ValueError: A band dim too small for ``k = int(n * beta) >= 1``.
    """
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].double()
    _, high = band_split(x, bands.beta, dims=bands.dims)
    out = torch.cat([x - high, high], dim=1)[0]
    return out.float().numpy()


@dataclass
class Volume:
    """A preprocessed case: ``image`` ``(C, X, Y, Z)`` float32, ``label`` ``(X, Y, Z)`` int64."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    loaded: LoadedCase  # the original grid (affine, header, spacing) for writing predictions


@dataclass(frozen=True)
class Preprocessor:
    """Load, normalise and (optionally) resample a case, and (optionally) split the whole
    volume into its bands; one object serves training, validation and prediction so
    that all three see identical inputs.

    Args:
        normalization: One scheme per channel (see :func:`normalize`).
        target_spacing: Resample to this voxel size in mm (``None``: keep the grid).
        bands: Split every whole volume into ``[U(low), high]`` channels
            (:func:`volume_bands`); ``None``: the model splits its inputs itself.
    """

    normalization: Sequence[str]
    target_spacing: Sequence[float] | None = None
    bands: VolumeBands | None = None

    def __post_init__(self) -> None:
        bad = [s for s in self.normalization if s not in NORMALIZATIONS]
        if bad:
            raise InputError(f"unknown normalisation {bad}; expected {list(NORMALIZATIONS)}")
        if self.target_spacing is not None and (
            len(self.target_spacing) != 3 or min(self.target_spacing) <= 0
        ):
            raise InputError(f"target_spacing must be 3 positive sizes, got {self.target_spacing}")

    def __call__(self, case: Case | LoadedCase, *, with_label: bool = True) -> Volume:
        loaded = case if isinstance(case, LoadedCase) else load_case(case, with_label=with_label)
        if len(loaded.image) != len(self.normalization):
            raise InputError(
                f"case {loaded.case_id!r} has {len(loaded.image)} channels but "
                f"{len(self.normalization)} normalisations are configured"
            )
        image = np.stack(
            [normalize(c, s) for c, s in zip(loaded.image, self.normalization, strict=True)]
        )
        label = None if loaded.label is None else loaded.label.astype(np.int64)
        if self.target_spacing is not None:
            image = resample(image, loaded.spacing, self.target_spacing, order=3)
            if label is not None:
                label = resample(
                    label, loaded.spacing, self.target_spacing, order=0, shape=image.shape[1:]
                )
        if self.bands is not None:
            image = volume_bands(image, self.bands)
        return Volume(loaded.case_id, np.ascontiguousarray(image, dtype=np.float32), label, loaded)
