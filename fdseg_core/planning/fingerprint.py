"""A dataset's fingerprint: what planning needs to know about its cases.

nnU-Net's ``DatasetFingerprintExtractor`` collects, per training case, the shape, the
voxel spacing and intensities sampled from the foreground; fdseg collects the same (it
does not crop to the non-zero region as nnU-Net does: fdseg trains on whole cases), plus
the volume of every labelled class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdseg_core.atomic import atomic_write_text
from fdseg_core.data import DatasetInfo, load_case, load_dataset
from fdseg_core.errors import InputError
from fdseg_core.progress import progress_bar

__all__ = ["CaseFingerprint", "Fingerprint", "fingerprint"]

#: Foreground voxels sampled per case and channel for the intensity statistics (nnU-Net's).
SAMPLES_PER_CASE = 10000


@dataclass(frozen=True)
class CaseFingerprint:
    """One training case.

    Attributes:
        case_id: The case.
        shape: ``(X, Y, Z)`` in voxels.
        spacing: Voxel size in mm, per axis.
        label_volumes_ml: Volume of each labelled class (name -> mL); 0 when absent.
    """

    case_id: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    label_volumes_ml: dict[str, float]


@dataclass(frozen=True)
class Fingerprint:
    """What planning knows of a dataset.

    Attributes:
        dataset: The dataset root.
        channel_names: The image channels.
        labels: Class name -> label value.
        cases: One :class:`CaseFingerprint` per training case.
        foreground_intensity: Per channel name, statistics of intensities sampled from
            the foreground of every case: ``mean``, ``std``, ``median``,
            ``percentile_00_5``, ``percentile_99_5``, ``min``, ``max``.
    """

    dataset: str
    channel_names: tuple[str, ...]
    labels: dict[str, int]
    cases: tuple[CaseFingerprint, ...]
    foreground_intensity: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def spacings(self) -> np.ndarray:
        """``(cases, 3)`` voxel sizes."""
        return np.asarray([c.spacing for c in self.cases], dtype=np.float64)

    @property
    def shapes(self) -> np.ndarray:
        """``(cases, 3)`` shapes in voxels."""
        return np.asarray([c.shape for c in self.cases], dtype=np.float64)

    def median_spacing(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.median(self.spacings, axis=0))

    def median_shape(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.median(self.shapes, axis=0))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        cases = tuple(
            CaseFingerprint(
                c["case_id"],
                tuple(c["shape"]),
                tuple(c["spacing"]),
                dict(c["label_volumes_ml"]),
            )
            for c in data["cases"]
        )
        return cls(
            dataset=data["dataset"],
            channel_names=tuple(data["channel_names"]),
            labels=dict(data["labels"]),
            cases=cases,
            foreground_intensity=dict(data.get("foreground_intensity", {})),
        )

    def save(self, path: str | Path) -> None:
        """Write as JSON (atomically)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")


def fingerprint(
    dataset: str | Path | DatasetInfo,
    *,
    samples_per_case: int = SAMPLES_PER_CASE,
    seed: int = 0,
    progress: bool = False,
) -> Fingerprint:
    """Read every training case once and describe the dataset.

    Args:
        dataset: Dataset root (nnU-Net v2 or MSD layout) or its loaded description.
        samples_per_case: Foreground voxels sampled per case for the intensity
            statistics.
        seed: Seed of the sampling.
        progress: Show a progress bar over cases.

    Raises:
        ValueError: A dataset without training cases, or a case without a label.
    """
    info = dataset if isinstance(dataset, DatasetInfo) else load_dataset(dataset)
    if not info.training:
        raise InputError(f"{info.root}: the dataset has no training case to plan from")
    rng = np.random.default_rng(seed)
    names = {v: k for k, v in info.labels.items() if v != 0}
    samples: list[list[np.ndarray]] = [[] for _ in info.channel_names]
    cases = []
    for case in progress_bar(info.training, progress=progress, desc="fingerprint", unit="case"):
        loaded = load_case(case)
        if loaded.label is None:
            raise InputError(f"case {case.case_id!r}: no label to plan from")
        voxel_ml = float(np.prod(loaded.spacing)) / 1000.0
        counts = np.bincount(
            loaded.label.astype(np.int64).ravel(), minlength=max(names, default=0) + 1
        )
        volumes = {name: float(counts[v]) * voxel_ml for v, name in sorted(names.items())}
        cases.append(
            CaseFingerprint(
                case.case_id,
                tuple(int(s) for s in loaded.image.shape[1:]),
                tuple(float(s) for s in loaded.spacing),
                volumes,
            )
        )
        foreground = loaded.label > 0
        for c, channel in enumerate(loaded.image):
            values = channel[foreground]
            if values.size:
                take = min(samples_per_case, values.size)
                samples[c].append(rng.choice(values, size=take, replace=False))
    stats = {
        name: _intensity_stats(np.concatenate(s) if s else np.zeros(0))
        for name, s in zip(info.channel_names, samples, strict=True)
    }
    return Fingerprint(
        dataset=str(info.root),
        channel_names=tuple(info.channel_names),
        labels=dict(info.labels),
        cases=tuple(cases),
        foreground_intensity=stats,
    )


def _intensity_stats(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {}
    p005, p995 = np.percentile(v, [0.5, 99.5])
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "median": float(np.median(v)),
        "percentile_00_5": float(p005),
        "percentile_99_5": float(p995),
        "min": float(v.min()),
        "max": float(v.max()),
    }
