"""A synthetic QSM head phantom with the iron-rich deep nuclei.

Geometry is defined in millimetres in an MNI-like RAS frame (x: left -> right,
y: posterior -> anterior, z: inferior -> superior, origin near the anterior
commissure), so the anatomy keeps its physical size whatever the grid. Every
structure is an ellipsoid (or a tube for veins) evaluated on coordinates warped
by a smooth random deformation, so the labels and the image stay aligned.

Susceptibilities (ppm, relative to CSF) are the base values of the QSM
reconstruction challenge 2.0 head phantom (Marques et al., MRM 86:526, 2021),
with the subthalamic nucleus between that phantom (0.11) and in-vivo 7 T values
(about 0.06; Schäfer et al., HBM 2012). Sizes and positions are typical MNI152
values (see ``docs/phantom.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

__all__ = ["PhantomConfig", "STRUCTURES", "Structure", "generate_case", "label_names"]


@dataclass(frozen=True)
class Structure:
    """An ellipsoid (``centre``, ``radii`` in mm) with a susceptibility (ppm).

    ``mirror`` adds the left copy at ``x -> -x`` (the centre is the right one).
    """

    name: str
    chi: float
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    mirror: bool = True
    tilt_deg: float = 0.0  # rotation about z (in-plane), degrees, for the right copy


#: Brain compartments (drawn first) and deep nuclei (drawn last, on top).
STRUCTURES: tuple[Structure, ...] = (
    Structure("thalamus", 0.02, (10.0, -18.0, 6.0), (8.0, 14.0, 8.0)),
    Structure("caudate", 0.044, (13.0, 12.0, 13.0), (5.0, 11.0, 6.0), tilt_deg=-10),
    Structure("putamen", 0.038, (25.0, 3.0, 1.0), (5.0, 14.0, 9.0), tilt_deg=-8),
    Structure("globus_pallidus", 0.13, (19.0, -2.0, -1.0), (4.0, 8.0, 5.0), tilt_deg=-8),
    Structure("substantia_nigra", 0.11, (10.5, -17.0, -12.0), (3.0, 9.0, 4.0), tilt_deg=30),
    Structure("subthalamic_nucleus", 0.09, (11.5, -13.0, -4.5), (3.0, 5.0, 2.5), tilt_deg=30),
    Structure("red_nucleus", 0.10, (5.5, -19.0, -9.0), (4.3, 5.0, 5.0)),
    Structure("dentate_nucleus", 0.15, (15.0, -57.0, -34.0), (6.5, 9.0, 6.5), tilt_deg=25),
)

_CHI_WM = -0.03
_CHI_GM = 0.02
_CHI_CSF = 0.0
_CHI_VEIN = 0.19
_LABELLED = {
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
            raise ValueError(f"shape must be 3 integers >= 8, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        sp = self.spacing
        sp = (float(sp),) * 3 if isinstance(sp, int | float) else tuple(float(s) for s in sp)
        if len(sp) != 3 or min(sp) <= 0:
            raise ValueError(
                f"spacing must be positive (one or three values), got {self.spacing!r}"
            )
        object.__setattr__(self, "spacing", sp)
        labels = tuple(self.labels)
        bad = [lab for lab in labels if lab not in _LABELLED]
        if not labels or bad or len(set(labels)) != len(labels):
            raise ValueError(
                f"labels must be distinct names from {list(_LABELLED)}, got {list(labels)!r}"
            )
        object.__setattr__(self, "labels", labels)
        if self.atlas and "dn" in labels:
            raise ValueError(
                "the atlas phantom has no dentate nucleus (CIT168 is subcortical): "
                "use labels from rn, sn, stn"
            )
        for name in ("noise", "texture", "deformation_mm", "size_jitter", "position_jitter_mm"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.tkd_threshold < 1:
            raise ValueError(f"tkd_threshold must lie in (0, 1), got {self.tkd_threshold!r}")

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
        base = _LABELLED[key]
        if config.split_hemispheres:
            out[f"{base}_left"] = len(out)
            out[f"{base}_right"] = len(out)
        else:
            out[base] = len(out)
    return out


def _smooth_field(rng: np.random.Generator, shape, sigma_vox: float, amplitude: float):
    noise = rng.standard_normal(shape).astype(np.float32)
    smooth = ndimage.gaussian_filter(noise, sigma_vox, mode="wrap")
    smooth /= max(float(smooth.std()), 1e-8)
    return amplitude * smooth


def _ellipsoid(x, y, z, centre, radii, tilt_deg):
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    if tilt_deg:
        t = math.radians(tilt_deg)
        dx, dy = dx * math.cos(t) + dy * math.sin(t), -dx * math.sin(t) + dy * math.cos(t)
    return (dx / radii[0]) ** 2 + (dy / radii[1]) ** 2 + (dz / radii[2]) ** 2 <= 1.0


def _tube(x, y, z, a, b, radius):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    ab = b - a
    t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / float(ab @ ab)
    t = np.clip(t, 0, 1)
    d2 = (x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2
    return d2 <= radius**2


def _dipole_kernel(shape, spacing):
    k = np.meshgrid(
        *[sfft.fftfreq(n, d=s).astype(np.float32) for n, s in zip(shape, spacing, strict=True)],
        indexing="ij",
    )
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 / 3.0 - k[2] ** 2 / k2
    d[0, 0, 0] = 0.0
    return d.astype(np.float32)


def _dipole_and_tkd(chi, mask, spacing, threshold, noise, rng):
    """Forward dipole model, field noise, thresholded k-space division, CSF referencing."""
    pad = [(16, 16)] * 3
    padded = np.pad(chi, pad)
    d = _dipole_kernel(padded.shape, spacing)
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


def generate_case(config: PhantomConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic QSM case.

    Args:
        config: Phantom options.
        seed: Seed of the anatomical variation, texture and noise.

    Returns:
        ``(chi, label, affine)``: susceptibility in ppm (float32, ``config.shape``,
        0 outside the brain), labels (uint8, values of :func:`label_names`), RAS affine.
    """
    rng = np.random.default_rng(seed)
    shape, spacing = config.shape, np.asarray(config.spacing, np.float32)
    affine = config.affine
    axes = [affine[i, 3] + np.arange(n, dtype=np.float32) * spacing[i] for i, n in enumerate(shape)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    # smooth deformation (mm), global scaling and shift
    if config.deformation_mm > 0:
        sigma = [20.0 / s for s in spacing]
        x = x + _smooth_field(rng, shape, sigma, config.deformation_mm)
        y = y + _smooth_field(rng, shape, sigma, config.deformation_mm)
        z = z + _smooth_field(rng, shape, sigma, config.deformation_mm)
    scale = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    shift = rng.normal(0, 1.5, 3).astype(np.float32)
    x, y, z = (x - shift[0]) / scale[0], (y - shift[1]) / scale[1], (z - shift[2]) / scale[2]

    brain = (
        _ellipsoid(x, y, z, (0, -8, 10), (66, 80, 52), 0)
        | _ellipsoid(x, y, z, (0, -52, -30), (48, 30, 20), 0)
        | _ellipsoid(x, y, z, (0, -25, -28), (11, 13, 26), 0)
    )
    # grey-matter ribbon: within ~3 mm of the brain surface
    inner = (
        _ellipsoid(x, y, z, (0, -8, 10), (62.5, 76.5, 48.5), 0)
        | _ellipsoid(x, y, z, (0, -52, -30), (45, 27, 17), 0)
        | _ellipsoid(x, y, z, (0, -25, -28), (11, 13, 26), 0)
    )
    chi = np.zeros(shape, np.float32)
    chi[brain] = _CHI_GM
    chi[inner] = _CHI_WM
    for side in (1, -1):  # lateral ventricles (curved: two ellipsoids) and the third
        chi[_ellipsoid(x, y, z, (side * 11, 2, 16), (5, 20, 7), side * 8)] = _CHI_CSF
        chi[_ellipsoid(x, y, z, (side * 16, -20, 12), (4, 10, 6), side * -20)] = _CHI_CSF
    chi[_ellipsoid(x, y, z, (0, -8, 2), (1.8, 12, 8), 0)] = _CHI_CSF

    names = label_names(config)
    label = np.zeros(shape, np.uint8)
    wanted = {_LABELLED[k]: k for k in config.labels}
    for s in STRUCTURES:
        for side in (1, -1) if s.mirror else (1,):
            jitter_r = 1 + rng.uniform(-config.size_jitter, config.size_jitter, 3)
            jitter_c = rng.normal(0, config.position_jitter_mm, 3)
            centre = (
                side * s.centre[0] + jitter_c[0],
                s.centre[1] + jitter_c[1],
                s.centre[2] + jitter_c[2],
            )
            radii = tuple(float(r * j) for r, j in zip(s.radii, jitter_r, strict=True))
            mask = _ellipsoid(x, y, z, centre, radii, side * s.tilt_deg) & brain
            # a mild gradient of iron content inside each nucleus
            chi[mask] = s.chi * (1 + 0.08 * np.tanh((z[mask] - centre[2]) / radii[2]))
            if s.name in wanted:
                if config.split_hemispheres:
                    value = names[f"{s.name}_{'right' if side > 0 else 'left'}"]
                else:
                    value = names[s.name]
                label[mask] = value
    # veins: internal cerebral veins and the straight sinus
    for a, b in (
        ((2, 5, 12), (2, -35, 10)),
        ((-2, 5, 12), (-2, -35, 10)),
        ((0, -38, 10), (0, -70, -4)),
    ):
        chi[_tube(x, y, z, a, b, 1.6) & brain] = _CHI_VEIN
    if config.texture > 0:
        sigma = [2.0 / s for s in spacing]
        chi += _smooth_field(rng, shape, sigma, config.texture) * (chi != _CHI_CSF) * brain
    if config.dipole:
        chi = _dipole_and_tkd(
            chi,
            brain.astype(np.float32),
            tuple(spacing.tolist()),
            config.tkd_threshold,
            config.noise,
            rng,
        )
    else:
        chi = chi + rng.normal(0, config.noise, shape).astype(np.float32)
    # QSM is relative to CSF: reference to the ventricles' median, mask outside the brain
    csf = brain & (label == 0)
    csf &= _ellipsoid(x, y, z, (11, 2, 16), (4, 18, 6), 8)
    if csf.any():
        chi = chi - np.median(chi[csf])
    chi = (chi * brain).astype(np.float32)
    return chi, label, affine
