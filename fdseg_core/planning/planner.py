"""Training defaults planned from a dataset's fingerprint: target spacing, patch size and
batch size, each with the reason it was chosen.

The rules follow nnU-Net's default experiment planner where fdseg does the same thing
(``docs/planning.md`` compares them line by line):

* **Target spacing**: the median spacing of the training cases, per axis. For
  anisotropic data (one axis more than 3 times coarser than the finest, and fewer than a
  third as many voxels along it) that axis takes the 10th percentile of its spacings
  instead, but not finer than the other axes' coarsest (nnU-Net's rule).
* **Patch size**: the median shape after resampling, rounded up to the backbone's size
  divisor, so that a median case fits in one patch when the memory budget allows; while
  a batch of 2 does not fit in the budget, the axis of largest physical extent (mm)
  loses one divisor step.
* **Batch size**: as many patches as the budget holds, at least 2, and at most 5 % of
  the dataset's voxels per step (nnU-Net's cap), but never below 2.

Memory is estimated from the network itself:
:func:`fdseg_core.nn.memory.activation_bytes_per_voxel` runs
the model once on a small input and adds up the elements of every layer's output (a
fully convolutional network's activations grow linearly with the voxels); training
keeps about twice that (activations and their gradients).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdseg_core.atomic import atomic_write_text
from fdseg_core.bands import band_width
from fdseg_core.choices import DEFAULT_BAND_DIMS, DEFAULT_MEMORY_GB
from fdseg_core.errors import InputError
from fdseg_core.planning.fingerprint import Fingerprint

__all__ = [
    "ANISOTROPY",
    "DEFAULT_MEMORY_GB",
    "MIN_LOW_BAND",
    "Plan",
    "plan_training",
    "target_spacing",
]

#: An axis this many times coarser than the finest makes the spacing anisotropic
#: (nnU-Net's ``ANISO_THRESHOLD``).
ANISOTROPY = 3.0
#: Fewest in-plane low-band samples per band axis before planning warns.
MIN_LOW_BAND = 4
#: Largest share of the dataset's voxels in one step (nnU-Net's 5 %).
MAX_DATASET_SHARE = 0.05


@dataclass(frozen=True)
class Plan:
    """A training plan and why.

    Attributes:
        target_spacing: Voxel size to resample every case to (mm).
        patch_size: Training patch ``(X, Y, Z)``.
        batch_size: Patches per step.
        median_shape: The median case shape after resampling (voxels).
        size_divisor: The backbone's divisor, per axis.
        bytes_per_voxel: Estimated training memory per input voxel.
        memory_gb: The budget.
        estimated_gb: What a step of ``batch_size`` patches is estimated to need.
        reasons: One line per decision.
        warnings: Lines the user should read (a low band with too few samples, a
            median case larger than the patch).
    """

    target_spacing: tuple[float, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    median_shape: tuple[float, ...]
    size_divisor: tuple[int, ...]
    bytes_per_voxel: float
    memory_gb: float
    estimated_gb: float
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def fields(self) -> dict[str, Any]:
        """The :class:`~fdseg_core.train.TrainConfig` fields the plan sets."""
        return {
            "target_spacing": tuple(self.target_spacing),
            "patch_size": tuple(self.patch_size),
            "batch_size": int(self.batch_size),
        }

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def save(self, path: str | Path, **extra: Any) -> Path:
        """Write ``plans.json`` (atomically), with ``extra`` keys (e.g. the fingerprint)."""
        path = Path(path)
        atomic_write_text(path, json.dumps({**self.to_dict(), **extra}, indent=1) + "\n")
        return path

    def report(self) -> str:
        """The reasons and warnings, one per line."""
        return "\n".join([*self.reasons, *(f"warning: {w}" for w in self.warnings)])


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> tuple[tuple[float, ...], str]:
    """The target spacing of cases with these spacings and shapes, and why.

    Args:
        spacings: ``(cases, 3)`` voxel sizes.
        shapes: ``(cases, 3)`` shapes.

    Returns:
        ``(spacing, reason)``.
    """
    spacings = np.asarray(spacings, dtype=np.float64)
    shapes = np.asarray(shapes, dtype=np.float64)
    target = np.median(spacings, axis=0)
    median_shape = np.median(shapes * spacings / target, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(target.size) if a != worst]
    aniso_spacing = target[worst] > ANISOTROPY * min(target[a] for a in others)
    aniso_voxels = median_shape[worst] * ANISOTROPY < min(median_shape[a] for a in others)
    text = f"target spacing {_mm(target)}: the median spacing of the training cases"
    if aniso_spacing and aniso_voxels:
        coarse = float(np.percentile(spacings[:, worst], 10))
        finest_other = max(target[a] for a in others)
        if coarse < finest_other:
            coarse = max(finest_other, coarse) + 1e-5
        target[worst] = coarse
        text = (
            f"target spacing {_mm(target)}: the median spacing, except axis {worst}, which is "
            f"more than {ANISOTROPY:g} times coarser than the finest and has fewer than a "
            f"third of the voxels: its 10th percentile (nnU-Net's rule for anisotropic data)"
        )
    return tuple(float(v) for v in target), text


def plan_training(
    fp: Fingerprint,
    *,
    size_divisor: int | Sequence[int],
    bytes_per_voxel: float,
    memory_gb: float = DEFAULT_MEMORY_GB,
    beta: float | None = None,
    band_dims: Sequence[int] = DEFAULT_BAND_DIMS,
) -> Plan:
    """Plan target spacing, patch size and batch size for a dataset.

    Args:
        fp: The dataset's :class:`Fingerprint`.
        size_divisor: The backbone's divisor (one, or one per axis).
        bytes_per_voxel: Training memory per input voxel
            (:func:`activation_bytes_per_voxel`).
        memory_gb: The budget of one step, in GiB.
        beta: The band width, to warn when the in-plane low band of a patch keeps fewer
            than :data:`MIN_LOW_BAND` samples (``None``: no band split).
        band_dims: The band dims of the ``(N, C, X, Y, Z)`` input.

    Raises:
        ValueError: A budget too small for two patches of the smallest size.
    """
    if not memory_gb > 0:
        raise InputError(f"memory_gb must be positive, got {memory_gb!r}")
    nd = fp.spacings.shape[1]
    divisor = (
        tuple(int(d) for d in size_divisor)
        if isinstance(size_divisor, Sequence)
        else (int(size_divisor),) * nd
    )
    spacing, spacing_reason = target_spacing(fp.spacings, fp.shapes)
    resampled = fp.shapes * fp.spacings / np.asarray(spacing)
    median = np.median(resampled, axis=0)
    budget = memory_gb * 2**30
    patch = [d * max(1, math.ceil(m / d)) for m, d in zip(median, divisor, strict=True)]
    reasons = [spacing_reason]
    shrunk = False
    while 2 * math.prod(patch) * bytes_per_voxel > budget:
        # the axis of largest physical extent loses one divisor step
        order = sorted(range(nd), key=lambda a: -patch[a] * spacing[a])
        axis = next((a for a in order if patch[a] > divisor[a]), None)
        if axis is None:
            need = 2 * math.prod(patch) * bytes_per_voxel / 2**30
            raise InputError(
                f"memory_gb {memory_gb:g} is below what two patches of {patch} need "
                f"({need:.2f} GiB)"
            )
        patch[axis] -= divisor[axis]
        shrunk = True
    if shrunk:
        reasons.append(
            f"patch size {patch}: the median resampled case ({_vox(median)}) does not fit a "
            f"batch of 2 in {memory_gb:g} GiB; the largest axes in mm were cut in steps of "
            f"the divisor {list(divisor)}"
        )
    else:
        reasons.append(
            f"patch size {patch}: the median resampled case ({_vox(median)}) rounded up to the "
            f"backbone's divisor {list(divisor)}, so that a median case fits in one patch"
        )
    per_sample = math.prod(patch) * bytes_per_voxel
    total = float(resampled.prod(axis=1).sum())
    share = math.prod(patch) / total
    by_share = int(MAX_DATASET_SHARE * total // math.prod(patch))
    share_cap = max(2, by_share)
    by_memory = max(2, int(budget // per_sample))
    batch = min(by_memory, share_cap)
    if by_share >= 2:
        cap = (
            f"and the cap of {MAX_DATASET_SHARE:.0%} of the dataset's voxels per step allows "
            f"{by_share}"
        )
    else:  # one patch is already more than the cap: nnU-Net's floor of 2 applies
        cap = (
            f"and one patch is already {share:.0%} of the dataset's voxels, above the cap of "
            f"{MAX_DATASET_SHARE:.0%} per step, so the floor of 2 patches applies"
        )
    reasons.append(
        f"batch size {batch}: {by_memory} patches fit in {memory_gb:g} GiB "
        f"({per_sample / 2**30:.2f} GiB each), {cap}"
    )
    warnings = []
    if any(p < m for p, m in zip(patch, median, strict=True)):
        warnings.append(
            f"the patch {patch} is smaller than the median case {_vox(median)}: inference "
            "tiles each case with a sliding window"
        )
    if beta is not None:
        kept = {d: band_width(patch[d - 2], beta) for d in band_dims if 0 <= d - 2 < nd}
        few = {d: k for d, k in kept.items() if k < MIN_LOW_BAND}
        if few:
            axes = ", ".join(f"axis {d - 2}: {k}" for d, k in few.items())
            warnings.append(
                f"beta {beta:g} keeps fewer than {MIN_LOW_BAND} in-plane low-band samples per "
                f"patch ({axes}): the low stem sees little more than the mean; a larger "
                "patch or beta keeps more"
            )
    return Plan(
        target_spacing=spacing,
        patch_size=tuple(patch),
        batch_size=batch,
        median_shape=tuple(float(m) for m in median),
        size_divisor=divisor,
        bytes_per_voxel=float(bytes_per_voxel),
        memory_gb=float(memory_gb),
        estimated_gb=batch * per_sample / 2**30,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
    )


def _mm(values) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "] mm"


def _vox(values) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in values) + "]"
