"""NIfTI input and output through nibabel, affines and headers preserved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from fdseg_core.atomic import atomic_path
from fdseg_core.data.layout import Case
from fdseg_core.errors import InputError

__all__ = ["LoadedCase", "load_nifti", "load_case", "save_nifti", "voxel_spacing"]


def load_nifti(path: str | Path, *, case: str | None = None) -> nib.Nifti1Image:
    """Open a NIfTI file (lazily); errors name the case and the file."""
    path = Path(path)
    who = f"case {case!r}: " if case else ""
    if not path.is_file():
        raise FileNotFoundError(f"{who}{path} not found")
    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise InputError(f"{who}{path} could not be read as NIfTI: {exc}") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"{who}{path} is not a NIfTI image")
    return img


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel sizes in mm from an affine (column norms of its 3x3 part)."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


@dataclass
class LoadedCase:
    """Arrays of one case: ``image`` ``(C, X, Y, Z)`` float32, ``label`` ``(X, Y, Z)`` int16."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    header: nib.Nifti1Header
    spacing: tuple[float, float, float]


def _read(img: nib.Nifti1Image, path: Path, case: str) -> np.ndarray:
    try:
        return np.asanyarray(img.dataobj)
    except Exception as exc:
        raise InputError(f"case {case!r}: {path} could not be read: {exc}") from exc


def load_case(case: Case, *, with_label: bool = True) -> LoadedCase:
    """Load all channels (and the label) of a case. 4D files are channels-last (MSD)."""
    channels = []
    affine = header = None
    for path in case.image_paths:
        img = load_nifti(path, case=case.case_id)
        data = _read(img, path, case.case_id).astype(np.float32, copy=False)
        if data.ndim == 4:
            channels.extend(np.moveaxis(data, -1, 0))
        elif data.ndim == 3:
            channels.append(data)
        else:
            raise InputError(
                f"case {case.case_id!r}: {path} has {data.ndim} dims, expected 3 "
                "(or 4, channels last)"
            )
        if affine is None:
            affine, header = img.affine, img.header
    label = None
    if with_label and case.label_path is not None:
        limg = load_nifti(case.label_path, case=case.case_id)
        raw = _read(limg, case.label_path, case.case_id)
        label = np.asarray(raw)
    image = np.stack(channels).astype(np.float32, copy=False)
    return LoadedCase(case.case_id, image, label, np.asarray(affine), header, voxel_spacing(affine))


def save_nifti(
    array: np.ndarray,
    affine: np.ndarray,
    path: str | Path,
    *,
    header: nib.Nifti1Header | None = None,
    dtype: np.dtype | None = None,
) -> Path:
    """Write a NIfTI file atomically (:func:`fdseg_core.atomic.atomic_path`).

    The affine is written to both the qform and the sform; other header fields are
    copied from ``header`` (data type and scaling follow ``array``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array if dtype is None else np.asarray(array).astype(dtype))
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64), header=hdr)
    img.set_data_dtype(arr.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    ending = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_path(path, suffix=ending) as tmp:  # nibabel picks the format by name
        nib.save(img, tmp)
    return path
