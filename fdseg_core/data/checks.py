"""Checks run on every case before training starts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fdseg_core.data.io import load_nifti
from fdseg_core.data.layout import Case, DatasetInfo
from fdseg_core.errors import InputError

__all__ = ["check_cases", "AFFINE_TOLERANCE"]

#: Largest difference (mm) allowed between two affines of one case.
AFFINE_TOLERANCE = 1e-3


def _grid(img):
    shape = img.shape[:3]
    return shape, np.asarray(img.affine)


def check_case(case: Case, allowed: set[int]) -> None:
    """Raise ``ValueError``/``FileNotFoundError`` naming the case and the file on a problem."""
    ref_shape = ref_affine = None
    ref_path = None
    for path in case.image_paths:
        img = load_nifti(path, case=case.case_id)
        shape, affine = _grid(img)
        if ref_shape is None:
            ref_shape, ref_affine, ref_path = shape, affine, path
        elif shape != ref_shape or not np.allclose(affine, ref_affine, atol=AFFINE_TOLERANCE):
            raise InputError(
                f"case {case.case_id!r}: channel file {path} is on another grid "
                f"than {ref_path} (shape {shape} vs {ref_shape})"
            )
        try:
            data = np.asanyarray(img.dataobj)
        except Exception as exc:
            raise InputError(f"case {case.case_id!r}: {path} could not be read: {exc}") from exc
        if not np.issubdtype(data.dtype, np.number):
            raise InputError(f"case {case.case_id!r}: {path} holds non-numeric data")
        if not np.all(np.isfinite(data)):
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise InputError(f"case {case.case_id!r}: {path} has {bad} NaN or Inf voxels")
    if case.label_path is None:
        return
    limg = load_nifti(case.label_path, case=case.case_id)
    shape, affine = _grid(limg)
    if shape != ref_shape:
        raise InputError(
            f"case {case.case_id!r}: label {case.label_path} has shape {shape} but "
            f"image {ref_path} has shape {ref_shape}"
        )
    if not np.allclose(affine, ref_affine, atol=AFFINE_TOLERANCE):
        diff = float(np.abs(affine - ref_affine).max())
        raise InputError(
            f"case {case.case_id!r}: label {case.label_path} and image {ref_path} "
            f"have different affines (max difference {diff:.4g} mm, tolerance "
            f"{AFFINE_TOLERANCE} mm)"
        )
    try:
        label = np.asanyarray(limg.dataobj)
    except Exception as exc:
        raise InputError(
            f"case {case.case_id!r}: {case.label_path} could not be read: {exc}"
        ) from exc
    if label.ndim != 3:
        raise InputError(
            f"case {case.case_id!r}: label {case.label_path} must be 3D, got shape {label.shape}"
        )
    if not np.all(np.isfinite(label)) or not np.array_equal(label, np.round(label)):
        raise InputError(f"case {case.case_id!r}: label {case.label_path} holds non-integer values")
    values = {int(v) for v in np.unique(label)}
    extra = sorted(values - allowed)
    if extra:
        raise InputError(
            f"case {case.case_id!r}: label {case.label_path} holds values {extra} "
            f"outside the declared labels {sorted(allowed)}"
        )


def check_cases(info: DatasetInfo, cases: Sequence[Case] | None = None) -> None:
    """Check every case of a dataset (default: the training cases) before training.

    Files readable; channels on one grid; image and label grids equal (shape, affine
    within :data:`AFFINE_TOLERANCE` mm); labels integer and within the declared set;
    no NaN or Inf in images. The first failure raises, naming the case and the file.

    Raises:
        ValueError: A failed check.
        FileNotFoundError: A missing file.
    """
    allowed = set(info.labels.values())
    for case in info.training if cases is None else cases:
        check_case(case, allowed)
