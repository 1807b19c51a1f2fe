"""Datasets (nnU-Net v2 and MSD layouts), NIfTI I/O, case checks, splits, preprocessing,
augmentation and patch sampling."""

from __future__ import annotations

from fdseg_core.data.checks import (
    DatasetCheck,
    DatasetCheckError,
    check_cases,
    check_dataset,
    require_clean_dataset,
)
from fdseg_core.data.io import LoadedCase, load_case, load_nifti, save_nifti, voxel_spacing
from fdseg_core.data.layout import (
    Case,
    DatasetInfo,
    class_names,
    group_channel_files,
    load_dataset,
    num_classes,
)
from fdseg_core.data.patches import PatchDataset, crop_or_pad
from fdseg_core.data.preprocess import (
    NORMALIZATIONS,
    Preprocessor,
    Volume,
    VolumeBands,
    default_normalization,
    normalize,
    resample,
    volume_bands,
)
from fdseg_core.data.splits import (
    ALL_FOLD,
    DEFAULT_FOLDS,
    FoldPlan,
    fold_cases,
    load_splits,
    make_splits,
    plan_folds,
    save_splits,
    select_subset,
)

__all__ = [
    "ALL_FOLD",
    "DEFAULT_FOLDS",
    "FoldPlan",
    "fold_cases",
    "NORMALIZATIONS",
    "Case",
    "DatasetInfo",
    "LoadedCase",
    "PatchDataset",
    "Preprocessor",
    "Volume",
    "VolumeBands",
    "DatasetCheck",
    "DatasetCheckError",
    "check_cases",
    "check_dataset",
    "require_clean_dataset",
    "class_names",
    "crop_or_pad",
    "default_normalization",
    "group_channel_files",
    "load_case",
    "load_dataset",
    "load_nifti",
    "load_splits",
    "num_classes",
    "make_splits",
    "normalize",
    "plan_folds",
    "resample",
    "save_nifti",
    "save_splits",
    "select_subset",
    "volume_bands",
    "voxel_spacing",
]
