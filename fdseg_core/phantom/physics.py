"""The imaging side of the QSM phantom, shared by the analytic and the atlas-driven
anatomy: smooth random fields (deformation, texture) and the dipole forward model with
a thresholded k-space division (TKD) inversion."""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

__all__ = ["dipole_and_tkd", "dipole_kernel", "smooth_field"]


def smooth_field(rng: np.random.Generator, shape, sigma_vox, amplitude: float) -> np.ndarray:
    """Gaussian-smoothed white noise (periodic), scaled to standard deviation ``amplitude``."""
    noise = rng.standard_normal(shape).astype(np.float32)
    smooth = ndimage.gaussian_filter(noise, sigma_vox, mode="wrap")
    smooth /= max(float(smooth.std()), 1e-8)
    return amplitude * smooth


def dipole_kernel(shape, spacing) -> np.ndarray:
    """The unit dipole in k-space, ``1/3 - kz^2 / k^2`` (0 at k = 0), B0 along z."""
    k = np.meshgrid(
        *[sfft.fftfreq(n, d=s).astype(np.float32) for n, s in zip(shape, spacing, strict=True)],
        indexing="ij",
    )
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 / 3.0 - k[2] ** 2 / k2
    d[0, 0, 0] = 0.0
    return d.astype(np.float32)


def dipole_and_tkd(chi, mask, spacing, threshold, noise, rng):
    """Forward dipole model, field noise, thresholded k-space division, and the
    reconstruction's global scale calibrated to ``chi`` inside ``mask``."""
    pad = [(16, 16)] * 3
    padded = np.pad(chi, pad)
    d = dipole_kernel(padded.shape, spacing)
    field_ = sfft.ifftn(sfft.fftn(padded, workers=-1) * d, workers=-1).real.astype(np.float32)
    field_ += rng.normal(0, noise, field_.shape).astype(np.float32)
    field_ *= np.pad(mask, pad)  # the field is only known inside the brain
    inv = np.where(
        np.abs(d) > threshold, 1.0 / np.where(d == 0, 1, d), np.sign(d) / threshold
    ).astype(np.float32)
    inv[0, 0, 0] = 0.0
    rec = sfft.ifftn(sfft.fftn(field_, workers=-1) * inv, workers=-1).real.astype(np.float32)
    rec = rec[16:-16, 16:-16, 16:-16]
    # TKD underestimates: calibrate its global scale inside the brain (least squares)
    m = mask.astype(bool)
    a = rec[m] - rec[m].mean()
    b = chi[m] - chi[m].mean()
    scale = float((a @ b) / max(float(a @ a), 1e-12))
    return rec * scale
