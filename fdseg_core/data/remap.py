"""A remapped copy of a dataset: its label values renumbered (and merged) to 0 .. K-1.

An atlas labelled with its own ids (0, 36, 37, 55 ... 60) or with left and right kept
apart is written again, never in place, as an nnU-Net v2 dataset whose labels a network
can train on: ``fdseg check DATASET --remap 36,37:1 --remap 57,58:2 --out NEWDIR``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from fdseg_core.atomic import check_output_file
from fdseg_core.data.layout import Case, load_dataset
from fdseg_core.data.problems import Problem
from fdseg_core.errors import InputError

__all__ = ["Remap", "parse_remap", "remap_dataset"]


@dataclass(frozen=True)
class Remap:
    """How label values become new ones.

    Attributes:
        values: Old value -> new value; old values not listed become background (0).
        names: New value -> class name (``None``: from the old names).
    """

    values: dict[int, int]
    names: dict[int, str | None]

    @property
    def new_values(self) -> list[int]:
        return sorted(set(self.values.values()))


def parse_remap(specs: Sequence[str]) -> Remap:
    """``["36,37:1", "57,58:2:putamen"]`` (also several in one string, space-separated)
    -> a :class:`Remap`: old values, a colon, the new value, and optionally a colon and
    the new class's name.

    Raises:
        InputError: A spec that is not ``OLD[,OLD...]:NEW[:NAME]``, an old value given
            twice, a new value 0, or new values that are not 1 .. K.
    """
    values: dict[int, int] = {}
    names: dict[int, str | None] = {}
    for spec in (part for text in specs for part in text.split()):
        fields = spec.split(":")
        if len(fields) not in (2, 3):
            raise InputError(f"--remap {spec}: expected OLD[,OLD...]:NEW[:NAME], e.g. 36,37:1")
        try:
            olds = [int(v) for v in fields[0].split(",") if v != ""]
            new = int(fields[1])
        except ValueError:
            raise InputError(f"--remap {spec}: the values must be integers, e.g. 36,37:1") from None
        if not olds:
            raise InputError(f"--remap {spec}: no old value before the colon")
        if new < 1:
            raise InputError(f"--remap {spec}: the new value must be 1 or more (0 is background)")
        for old in olds:
            if old in values:
                raise InputError(f"--remap: the old value {old} is mapped twice")
            values[old] = new
        if len(fields) == 3 and fields[2]:
            names[new] = fields[2]
        else:
            names.setdefault(new, None)
    if not values:
        raise InputError("--remap: no mapping given")
    new_values = sorted(set(values.values()))
    if new_values != list(range(1, len(new_values) + 1)):
        raise InputError(
            f"--remap: the new values {new_values} must be 1 to {len(new_values)}, one per class"
        )
    return Remap(values, names)


def remap_dataset(
    root: str | Path, remap: Remap, out: str | Path, *, progress: bool = False
) -> tuple[Path, list[str]]:
    """Write a copy of the dataset in ``root`` with remapped labels, as an nnU-Net v2
    dataset in ``out`` (images copied, channel by channel; labels remapped; affines and
    headers kept; a ``dataset.json`` with the new classes). The user's files are never
    changed; ``out`` is written in a temporary folder beside it and renamed into place,
    so a failure leaves nothing half-written.

    Returns:
        ``(out, lines)``: the folder, and what the remap did (one line per new class,
        and the old values dropped to background).

    Raises:
        InputError: ``out`` exists and is not empty, or is the dataset itself.
    """
    from fdseg_core.progress import progress_bar  # lazy: only when a copy is written

    root, out = Path(root), Path(out)
    if out.resolve() == root.resolve():
        raise InputError(f"--out {out} is the dataset itself: the copy goes elsewhere")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out} exists and is not empty: give a new folder")
    check_output_file(out / "dataset.json")
    problems: list[Problem] = []  # labels that are not consecutive are what remap mends
    info = load_dataset(root, problems=problems)
    old_names = {v: k for k, v in info.labels.items()}
    unknown = sorted(set(remap.values) - set(old_names))
    if unknown:
        raise InputError(
            f"--remap: the values {unknown} are not labels of {root / 'dataset.json'} "
            f"(its labels: {sorted(old_names)})"
        )
    labels = {"background": 0}
    lines = []
    for new in remap.new_values:
        olds = sorted(o for o, n in remap.values.items() if n == new)
        name = remap.names.get(new) or "+".join(old_names[o] for o in olds)
        labels[name] = new
        lines.append(f"class {new} {name!r}: old values {olds}")
    dropped = sorted(v for v in old_names if v and v not in remap.values)
    if dropped:
        lines.append(f"old values {dropped} become background")
    lut = np.zeros(max(max(old_names), max(remap.values)) + 1, dtype=np.uint16)
    for old, new in remap.values.items():
        lut[old] = new
    dtype = np.uint8 if len(labels) <= 255 else np.uint16
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        jobs = [("Tr", c) for c in info.training] + [("Ts", c) for c in info.test]
        for split, case in progress_bar(jobs, progress=progress, desc="remap", unit="case"):
            _write_case(case, tmp, split, lut, dtype)
        meta = {
            "name": f"{info.name} (remapped)",
            "description": f"{root}: labels remapped by fdseg check --remap",
            "channel_names": {str(i): n for i, n in enumerate(info.channel_names)},
            "labels": labels,
            "numTraining": len(info.training),
            "file_ending": ".nii.gz",
            "remap": {str(k): v for k, v in sorted(remap.values.items())},
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, lines


def _write_case(case: Case, folder: Path, split: str, lut: np.ndarray, dtype) -> None:
    images, labels = folder / f"images{split}", folder / f"labels{split}"
    images.mkdir(exist_ok=True)
    channel = 0
    for path in case.image_paths:
        img = nib.load(str(path))
        if img.ndim == 4:  # MSD: channels last, one file per channel in nnU-Net's layout
            data = np.asanyarray(img.dataobj)
            for c in range(data.shape[-1]):
                part = nib.Nifti1Image(data[..., c], img.affine, img.header)
                nib.save(part, str(images / f"{case.case_id}_{channel:04d}.nii.gz"))
                channel += 1
        else:
            target = images / f"{case.case_id}_{channel:04d}.nii.gz"
            if str(path).endswith(".nii.gz"):
                shutil.copyfile(path, target)
            else:
                nib.save(img, str(target))
            channel += 1
    if case.label_path is None:
        return
    labels.mkdir(exist_ok=True)
    limg = nib.load(str(case.label_path))
    raw = np.asanyarray(limg.dataobj)
    values = np.rint(raw).astype(np.int64)
    if values.min() < 0 or values.max() >= len(lut):
        raise InputError(
            f"case {case.case_id!r}: label {case.label_path} holds values outside the "
            "dataset's labels; run fdseg check on it first"
        )
    header = limg.header.copy()
    header.set_data_dtype(dtype)
    header.set_slope_inter(1, 0)
    remapped = nib.Nifti1Image(lut[values].astype(dtype), limg.affine, header)
    nib.save(remapped, str(labels / f"{case.case_id}.nii.gz"))
