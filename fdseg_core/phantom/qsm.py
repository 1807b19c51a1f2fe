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

from fdseg_core.phantom.atlas import generate_atlas_case
from fdseg_core.phantom.config import LABELLED, PhantomConfig, label_names
from fdseg_core.phantom.physics import dipole_and_tkd, smooth_field

__all__ = ["PhantomConfig", "STRUCTURES", "Structure", "generate_case", "label_names"]

_CHI_WM = -0.03
_CHI_GM = 0.02
_CHI_CSF = 0.0
_CHI_VEIN = 0.19

#: ``(x, y, z)`` world coordinates (mm) of every voxel, as the anatomy sees them.
Coordinates = tuple[np.ndarray, np.ndarray, np.ndarray]


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


def _coordinates(config: PhantomConfig, spacing: np.ndarray, rng) -> Coordinates:
    """The voxels' world coordinates (mm) under a smooth random deformation, then a
    random global scaling and shift: where each voxel lies in the anatomy's frame."""
    shape, affine = config.shape, config.affine
    axes = [affine[i, 3] + np.arange(n, dtype=np.float32) * spacing[i] for i, n in enumerate(shape)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    if config.deformation_mm > 0:
        sigma = [20.0 / s for s in spacing]
        x = x + smooth_field(rng, shape, sigma, config.deformation_mm)
        y = y + smooth_field(rng, shape, sigma, config.deformation_mm)
        z = z + smooth_field(rng, shape, sigma, config.deformation_mm)
    scale = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    shift = rng.normal(0, 1.5, 3).astype(np.float32)
    return (x - shift[0]) / scale[0], (y - shift[1]) / scale[1], (z - shift[2]) / scale[2]


def _brain_tissue(xyz: Coordinates, shape) -> tuple[np.ndarray, np.ndarray]:
    """The brain mask (cerebrum, cerebellum, brainstem) and its susceptibility: a grey
    matter ribbon, white matter inside it, the ventricles (CSF)."""
    brain = (
        _ellipsoid(*xyz, (0, -8, 10), (66, 80, 52), 0)
        | _ellipsoid(*xyz, (0, -52, -30), (48, 30, 20), 0)
        | _ellipsoid(*xyz, (0, -25, -28), (11, 13, 26), 0)
    )
    # grey-matter ribbon: within ~3 mm of the brain surface
    inner = (
        _ellipsoid(*xyz, (0, -8, 10), (62.5, 76.5, 48.5), 0)
        | _ellipsoid(*xyz, (0, -52, -30), (45, 27, 17), 0)
        | _ellipsoid(*xyz, (0, -25, -28), (11, 13, 26), 0)
    )
    chi = np.zeros(shape, np.float32)
    chi[brain] = _CHI_GM
    chi[inner] = _CHI_WM
    for side in (1, -1):  # lateral ventricles (curved: two ellipsoids) and the third
        chi[_ellipsoid(*xyz, (side * 11, 2, 16), (5, 20, 7), side * 8)] = _CHI_CSF
        chi[_ellipsoid(*xyz, (side * 16, -20, 12), (4, 10, 6), side * -20)] = _CHI_CSF
    chi[_ellipsoid(*xyz, (0, -8, 2), (1.8, 12, 8), 0)] = _CHI_CSF
    return brain, chi


def _draw_nuclei(
    chi: np.ndarray, xyz: Coordinates, brain: np.ndarray, config: PhantomConfig, rng
) -> np.ndarray:
    """Draw every structure of :data:`STRUCTURES` (each side, with random size and
    position) into ``chi`` in place; returns the label map of the labelled ones."""
    names = label_names(config)
    label = np.zeros(config.shape, np.uint8)
    wanted = {LABELLED[k]: k for k in config.labels}
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
            mask = _ellipsoid(*xyz, centre, radii, side * s.tilt_deg) & brain
            # a mild gradient of iron content inside each nucleus
            chi[mask] = s.chi * (1 + 0.08 * np.tanh((xyz[2][mask] - centre[2]) / radii[2]))
            if s.name in wanted:
                if config.split_hemispheres:
                    value = names[f"{s.name}_{'right' if side > 0 else 'left'}"]
                else:
                    value = names[s.name]
                label[mask] = value
    return label


def _draw_veins(chi: np.ndarray, xyz: Coordinates, brain: np.ndarray) -> None:
    """The internal cerebral veins and the straight sinus, into ``chi`` in place."""
    for a, b in (
        ((2, 5, 12), (2, -35, 10)),
        ((-2, 5, 12), (-2, -35, 10)),
        ((0, -38, 10), (0, -70, -4)),
    ):
        chi[_tube(*xyz, a, b, 1.6) & brain] = _CHI_VEIN


def _acquire(
    chi: np.ndarray, brain: np.ndarray, config: PhantomConfig, spacing: np.ndarray, rng
) -> np.ndarray:
    """Tissue texture (in place), then the measurement: the dipole model with noise on the
    field and TKD inversion, or noise on ``chi``."""
    if config.texture > 0:
        sigma = [2.0 / s for s in spacing]
        chi += smooth_field(rng, config.shape, sigma, config.texture) * (chi != _CHI_CSF) * brain
    if config.dipole:
        return dipole_and_tkd(
            chi,
            brain.astype(np.float32),
            tuple(spacing.tolist()),
            config.tkd_threshold,
            config.noise,
            rng,
        )
    return chi + rng.normal(0, config.noise, config.shape).astype(np.float32)


def _reference_to_csf(
    chi: np.ndarray, brain: np.ndarray, label: np.ndarray, xyz: Coordinates
) -> np.ndarray:
    """QSM is relative to CSF: ``chi`` minus its median in the right lateral ventricle,
    0 outside the brain (float32)."""
    csf = brain & (label == 0)
    csf &= _ellipsoid(*xyz, (11, 2, 16), (4, 18, 6), 8)
    if csf.any():
        chi = chi - np.median(chi[csf])
    return (chi * brain).astype(np.float32)


def generate_case(config: PhantomConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic QSM case (the atlas-driven one with ``config.atlas``:
    :func:`~fdseg_core.phantom.atlas.generate_atlas_case`).

    Args:
        config: Phantom options.
        seed: Seed of the anatomical variation, texture and noise.

    Returns:
        ``(chi, label, affine)``: susceptibility in ppm (float32, ``config.shape``,
        0 outside the brain), labels (uint8, values of :func:`label_names`), RAS affine.
    """
    if config.atlas:
        return generate_atlas_case(config, seed)
    rng = np.random.default_rng(seed)  # drawn in this order: anatomy, nuclei, texture, noise
    spacing = np.asarray(config.spacing, np.float32)
    xyz = _coordinates(config, spacing, rng)
    brain, chi = _brain_tissue(xyz, config.shape)
    label = _draw_nuclei(chi, xyz, brain, config, rng)
    _draw_veins(chi, xyz, brain)
    chi = _acquire(chi, brain, config, spacing, rng)
    return _reference_to_csf(chi, brain, label, xyz), label, config.affine
