"""Checks of a dataset's cases: every problem named with its case and file.

One set of rules serves two callers. Training, planning and prediction read a case only
after :func:`check_cases` found nothing wrong with it (the first error raises, in one
line). ``fdseg check`` reads every case once, in parallel, and lists every problem at
once with a summary of the dataset (:func:`check_dataset`). Results are cached by the
files' sizes and modification times, so a second check of an unchanged dataset reads
nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from fdseg_core.cache import cache_dir
from fdseg_core.data.io import load_nifti, voxel_spacing
from fdseg_core.data.layout import Case, DatasetInfo, load_dataset
from fdseg_core.data.problems import ERROR, WARNING, Problem
from fdseg_core.errors import InputError

__all__ = [
    "AFFINE_TOLERANCE",
    "CaseFacts",
    "DatasetCheck",
    "DatasetCheckError",
    "check_case",
    "check_cases",
    "check_dataset",
    "inspect_case",
    "require_clean_dataset",
]

#: Largest difference (mm) allowed between two affines of one case.
AFFINE_TOLERANCE = 1e-3
#: A class present in fewer than this share of the labelled cases is worth a warning.
RARE_CLASS = 0.5
#: Bump when the facts or the rules change: cached results of older checks are dropped.
_CACHE_VERSION = 1


@dataclass(frozen=True)
class CaseFacts:
    """What a check learnt of one case (for the dataset's summary).

    Attributes:
        case: The case id.
        shape: The image grid.
        spacing: Voxel size (mm).
        orientation: Axis codes of the image (``"RAS"``, ``"PSR"``, ...).
        dtype: The stored data type of the first channel.
        intensity: The 1st and 99th percentiles of the first channel.
        class_voxels: Voxels of each label value (the label's own values).
    """

    case: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    orientation: str
    dtype: str
    intensity: tuple[float, float]
    class_voxels: dict[int, int] = field(default_factory=dict)


def _problem(kind: str, message: str, case: Case, file: Path | str, severity: str = ERROR):
    return Problem(severity, kind, message, case.case_id, str(file))


def inspect_case(case: Case, allowed: set[int]) -> tuple[CaseFacts | None, list[Problem]]:
    """Read one case and report every problem of it.

    Files readable; channels on one grid; image and label grids equal (shape, affine
    within :data:`AFFINE_TOLERANCE` mm); labels integer and within the declared set;
    no NaN or Inf in images; an empty label is a warning.

    Returns:
        ``(facts, problems)``: ``facts`` is ``None`` when the image could not be read.
    """
    problems: list[Problem] = []
    ref_shape = ref_affine = ref_path = None
    first_data = first_img = None
    for path in case.image_paths:
        try:
            img = load_nifti(path, case=case.case_id)
            data = np.asanyarray(img.dataobj)
        except FileNotFoundError as exc:
            return None, [Problem(ERROR, "missing_file", str(exc), case.case_id, str(path), True)]
        except Exception as exc:  # truncated or foreign files: named, never raised here
            reason = str(exc).splitlines()[0]
            message = f"case {case.case_id!r}: {path} could not be read ({reason})"
            return None, [_problem("unreadable", message, case, path)]
        shape = img.shape[:3]
        if ref_shape is None:
            ref_shape, ref_affine, ref_path = shape, np.asarray(img.affine), path
            first_data, first_img = data, img
        elif shape != ref_shape or not np.allclose(img.affine, ref_affine, atol=AFFINE_TOLERANCE):
            problems.append(
                _problem(
                    "grid",
                    f"case {case.case_id!r}: channel file {path} is on another grid than "
                    f"{ref_path} (shape {shape} vs {ref_shape})",
                    case,
                    path,
                )
            )
        if not np.issubdtype(data.dtype, np.number):
            problems.append(
                _problem(
                    "unreadable",
                    f"case {case.case_id!r}: {path} holds non-numeric data",
                    case,
                    path,
                )
            )
        elif not np.all(np.isfinite(data)):
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            problems.append(
                _problem(
                    "non_finite",
                    f"case {case.case_id!r}: {path} has {bad} NaN or Inf voxels; replace them "
                    "(e.g. by 0) before training",
                    case,
                    path,
                )
            )
    finite = (
        first_data[np.isfinite(first_data)] if np.issubdtype(first_data.dtype, np.number) else None
    )
    low, high = (
        (float(np.percentile(finite, 1)), float(np.percentile(finite, 99)))
        if finite is not None and finite.size
        else (float("nan"), float("nan"))
    )
    facts = CaseFacts(
        case=case.case_id,
        shape=tuple(int(s) for s in ref_shape),
        spacing=tuple(round(s, 6) for s in voxel_spacing(ref_affine)),
        orientation="".join(nib.aff2axcodes(ref_affine)),
        dtype=str(first_img.get_data_dtype()),
        intensity=(low, high),
    )
    if case.label_path is None:
        return facts, problems
    label_problems, voxels = _inspect_label(case, ref_shape, ref_affine, ref_path, allowed)
    problems += label_problems
    return CaseFacts(**{**asdict(facts), "class_voxels": voxels}), problems


def _inspect_label(case, ref_shape, ref_affine, ref_path, allowed):
    path = case.label_path
    try:
        limg = load_nifti(path, case=case.case_id)
        label = np.asanyarray(limg.dataobj)
    except FileNotFoundError as exc:
        return [Problem(ERROR, "missing_file", str(exc), case.case_id, str(path), True)], {}
    except Exception as exc:
        reason = str(exc).splitlines()[0]
        return [
            _problem(
                "unreadable",
                f"case {case.case_id!r}: {path} could not be read ({reason})",
                case,
                path,
            )
        ], {}
    problems = []
    shape = limg.shape[:3]
    if label.ndim != 3:
        problems.append(
            _problem(
                "grid",
                f"case {case.case_id!r}: label {path} must be 3D, got shape {label.shape}",
                case,
                path,
            )
        )
        return problems, {}
    if shape != ref_shape:
        problems.append(
            _problem(
                "grid",
                f"case {case.case_id!r}: label {path} has shape {shape} but image {ref_path} "
                f"has shape {ref_shape}",
                case,
                path,
            )
        )
    elif not np.allclose(limg.affine, ref_affine, atol=AFFINE_TOLERANCE):
        diff = float(np.abs(np.asarray(limg.affine) - ref_affine).max())
        problems.append(
            _problem(
                "grid",
                f"case {case.case_id!r}: label {path} and image {ref_path} have different "
                f"affines (max difference {diff:.4g} mm, tolerance {AFFINE_TOLERANCE} mm)",
                case,
                path,
            )
        )
    finite = np.all(np.isfinite(label))
    rounded = np.round(label) if finite else label
    if not finite or not np.array_equal(label, rounded):
        worst = float(np.nanmax(np.abs(label - rounded))) if finite else float("inf")
        problems.append(
            _problem(
                "non_integer_label",
                f"case {case.case_id!r}: label {path} holds non-integer values (largest "
                f"distance to an integer {worst:.3g}); round them and store the label as an "
                "integer type (e.g. numpy.rint(label).astype('uint8'))",
                case,
                path,
            )
        )
        return problems, {}
    values, counts = np.unique(label.astype(np.int64), return_counts=True)
    voxels = {int(v): int(n) for v, n in zip(values, counts, strict=True)}
    extra = sorted(set(voxels) - allowed)
    if extra:
        problems.append(
            _problem(
                "unlisted_label",
                f"case {case.case_id!r}: label {path} holds values {extra} outside the "
                f"declared labels {sorted(allowed)}",
                case,
                path,
            )
        )
    if set(voxels) <= {0}:
        problems.append(
            _problem(
                "empty_label",
                f"case {case.case_id!r}: label {path} holds no foreground",
                case,
                path,
                WARNING,
            )
        )
    return problems, voxels


def check_case(case: Case, allowed: set[int]) -> None:
    """Raise on the first error of one case (``FileNotFoundError`` for a missing file,
    :class:`~fdseg_core.errors.InputError` otherwise), naming the case and the file."""
    for problem in inspect_case(case, allowed)[1]:
        if problem.severity == ERROR:
            if problem.missing:
                raise FileNotFoundError(problem.message)
            raise InputError(problem.message)


def check_cases(info: DatasetInfo, cases: Sequence[Case] | None = None) -> None:
    """Check every case of a dataset (default: the training cases) before training:
    the first error raises, naming the case and the file (:func:`inspect_case`).

    Raises:
        ValueError: A failed check.
        FileNotFoundError: A missing file.
    """
    allowed = set(info.labels.values())
    for case in info.training if cases is None else cases:
        check_case(case, allowed)


@dataclass(frozen=True)
class DatasetCheck:
    """Every problem of a dataset, and what a user should know of it before training.

    Attributes:
        root: The dataset folder.
        problems: Errors and warnings, in case order.
        facts: One :class:`CaseFacts` per readable case.
        labels: The declared labels (name -> value).
    """

    root: str
    problems: tuple[Problem, ...]
    facts: tuple[CaseFacts, ...]
    labels: dict[str, int]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    def summary(self) -> dict[str, Any]:
        """Cases, shapes, spacings, orientations, intensity types and ranges, and the
        volume of each class (median mL over the cases that hold it)."""
        facts = self.facts
        if not facts:
            return {"cases": 0}
        shapes = np.array([f.shape for f in facts])
        spacings = np.array([f.spacing for f in facts])
        names = {v: k for k, v in self.labels.items()}
        volumes = {}
        for value in sorted(names):
            if value == 0:
                continue
            ml = [
                f.class_voxels[value] * float(np.prod(f.spacing)) / 1000.0
                for f in facts
                if f.class_voxels.get(value)
            ]
            volumes[names[value]] = {
                "cases": len(ml),
                "median_ml": float(np.median(ml)) if ml else None,
            }
        return {
            "cases": len(facts),
            "shape": {
                "min": shapes.min(axis=0).tolist(),
                "median": np.median(shapes, axis=0).tolist(),
                "max": shapes.max(axis=0).tolist(),
            },
            "spacing": {
                "min": spacings.min(axis=0).tolist(),
                "median": np.median(spacings, axis=0).tolist(),
                "max": spacings.max(axis=0).tolist(),
            },
            "orientations": dict(Counter(f.orientation for f in facts)),
            "dtypes": dict(Counter(f.dtype for f in facts)),
            "intensity_p1_p99": [
                min(f.intensity[0] for f in facts),
                max(f.intensity[1] for f in facts),
            ],
            "classes": volumes,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.root,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [p.as_dict() for p in self.problems],
            "summary": self.summary(),
        }

    def lines(self) -> list[str]:
        """The report as text: each problem on a line, then a count and the summary."""
        out = [f"{p.severity}: {p.message}" for p in self.problems]
        out.append(
            f"{self.root}: {len(self.errors)} error(s), {len(self.warnings)} warning(s) in "
            f"{len(self.facts)} readable case(s)"
        )
        s = self.summary()
        if s["cases"]:
            out += [
                f"  shapes {s['shape']['min']} to {s['shape']['max']} (median "
                f"{s['shape']['median']}), spacings {s['spacing']['min']} to "
                f"{s['spacing']['max']} mm",
                "  orientations "
                + ", ".join(f"{k} ({n})" for k, n in s["orientations"].items())
                + "; stored types "
                + ", ".join(f"{k} ({n})" for k, n in s["dtypes"].items())
                + f"; intensities (1st to 99th percentile) {s['intensity_p1_p99'][0]:.4g} "
                f"to {s['intensity_p1_p99'][1]:.4g}",
            ]
            for name, v in s["classes"].items():
                vol = f"{v['median_ml']:.3g} mL" if v["median_ml"] is not None else "-"
                out.append(f"  class {name}: in {v['cases']} case(s), median {vol}")
        return out


class DatasetCheckError(InputError):
    """A dataset with errors: the message is one line; :attr:`check` holds them all."""

    def __init__(self, check: DatasetCheck) -> None:
        self.check = check
        first = check.errors[0].message
        more = len(check.errors) - 1
        tail = f" (and {more} more: fdseg check {check.root} lists them all)" if more else ""
        super().__init__(first + tail)


def _dataset_warnings(check_facts: list[CaseFacts], labels: dict[str, int]) -> list[Problem]:
    """Warnings about the dataset as a whole: mixed orientations, spacings or types, and
    classes absent from most cases."""
    problems = []
    if not check_facts:
        return problems
    for kind, what, values in (
        ("mixed_orientation", "orientations", [f.orientation for f in check_facts]),
        ("mixed_spacing", "spacings", [f.spacing for f in check_facts]),
        ("mixed_dtype", "stored intensity types", [f.dtype for f in check_facts]),
    ):
        counts = Counter(values)
        if len(counts) > 1:
            shown = ", ".join(f"{k} ({n} cases)" for k, n in counts.most_common(4))
            problems.append(Problem(WARNING, kind, f"mixed {what}: {shown}"))
    labelled = [f for f in check_facts if f.class_voxels]
    for name, value in labels.items():
        if value == 0 or not labelled:
            continue
        holding = sum(1 for f in labelled if f.class_voxels.get(value))
        if holding < RARE_CLASS * len(labelled):
            problems.append(
                Problem(
                    WARNING,
                    "rare_class",
                    f"class {name!r} (value {value}) is in {holding} of {len(labelled)} "
                    "labelled cases",
                )
            )
    return problems


def _stamp(case: Case) -> list[Any]:
    """What a cached result of a case depends on: its files' paths, sizes and times."""
    stamp = []
    for path in (*case.image_paths, case.label_path):
        if path is None:
            continue
        try:
            st = os.stat(path)
            stamp.append([str(path), st.st_size, st.st_mtime_ns])
        except OSError:
            stamp.append([str(path), None, None])
    return stamp


def _cache_file(root: Path) -> Path:
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "checks" / f"{key}.json"


def _encode(case: Case, allowed: set[int], facts, problems) -> dict[str, Any]:
    return {
        "key": _key(case, allowed),
        "facts": asdict(facts) if facts is not None else None,
        "problems": [p.as_dict() for p in problems],
    }


def _decode(entry: dict[str, Any]) -> tuple[CaseFacts | None, list[Problem]]:
    raw = entry["facts"]
    facts = None
    if raw is not None:
        facts = CaseFacts(
            case=raw["case"],
            shape=tuple(raw["shape"]),
            spacing=tuple(raw["spacing"]),
            orientation=raw["orientation"],
            dtype=raw["dtype"],
            intensity=tuple(raw["intensity"]),
            class_voxels={int(k): int(v) for k, v in raw["class_voxels"].items()},
        )
    return facts, [Problem(**p) for p in entry["problems"]]


def _inspect_one(args):
    case, allowed = args
    return inspect_case(case, allowed)


def check_dataset(
    root: str | Path,
    *,
    jobs: int = 1,
    progress: bool = False,
    cache: bool = True,
    min_shape: Sequence[int] | None = None,
) -> DatasetCheck:
    """Read every case of a dataset once and report every problem (``fdseg check``).

    Errors: a listed or expected file missing, a case count that does not match, image
    and label grids that differ (shape or affine, channels included), labels that are
    not integers, label values the ``dataset.json`` does not list or that are not
    consecutive, NaN or infinite intensities, unreadable or truncated files. Warnings:
    empty labels, a class absent from most cases, mixed orientations, spacings or
    intensity types, cases smaller than ``min_shape``.

    Args:
        root: The dataset folder.
        jobs: Cases read at once (processes).
        progress: A progress bar over the cases.
        cache: Reuse the results of cases whose files have not changed (their sizes and
            modification times), kept in fdseg's cache folder.
        min_shape: The smallest case the network takes (a warning below it).

    Returns:
        The :class:`DatasetCheck`.

    Raises:
        FileNotFoundError: No such folder, or no ``dataset.json``.
        InputError: A ``dataset.json`` that cannot be read.
    """
    from fdseg_core.progress import progress_bar  # lazy: only when the cases are read

    root = Path(root)
    problems: list[Problem] = []
    info = load_dataset(root, problems=problems)
    allowed = set(info.labels.values())
    cases = list(info.training) + [c for c in info.test if c.label_path is not None]
    cache_path = _cache_file(root)
    saved: dict = {}
    if cache and cache_path.is_file():
        try:
            saved = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            saved = {}
    fresh: dict = {}
    todo = [c for c in cases if not _cached(c, allowed, saved)] if cache else cases
    results: dict[str, tuple] = {}
    if jobs > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor  # lazy: parallel reading only

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            done = pool.map(_inspect_one, [(c, allowed) for c in todo], chunksize=4)
            for case, result in progress_bar(
                zip(todo, done, strict=True), total=len(todo), progress=progress, desc="check",
                unit="case",
            ):  # fmt: skip
                results[case.case_id] = result
    else:
        for case in progress_bar(todo, progress=progress, desc="check", unit="case"):
            results[case.case_id] = inspect_case(case, allowed)
    facts: list[CaseFacts] = []
    for case in cases:
        if case.case_id in results:
            fact, found = results[case.case_id]
        else:
            fact, found = _decode(saved[case.case_id])
        fresh[case.case_id] = _encode(case, allowed, fact, found)
        problems += found
        if fact is not None:
            facts.append(fact)
            if min_shape is not None and any(
                s < m for s, m in zip(fact.shape, min_shape, strict=False)
            ):
                problems.append(
                    Problem(
                        WARNING,
                        "too_small",
                        f"case {case.case_id!r}: shape {list(fact.shape)} is smaller than the "
                        f"network's smallest input {list(min_shape)} on some axis (it is padded)",
                        case.case_id,
                    )
                )
    problems += _dataset_warnings(facts, info.labels)
    if cache:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(fresh))
        except OSError:
            pass  # a cache that cannot be written only costs a reread
    return DatasetCheck(str(root), tuple(problems), tuple(facts), dict(info.labels))


def _key(case: Case, allowed: set[int]) -> str:
    return json.dumps([_stamp(case), sorted(allowed), _CACHE_VERSION])


def _cached(case: Case, allowed: set[int], saved: dict) -> bool:
    hit = saved.get(case.case_id)
    return bool(hit) and hit.get("key") == _key(case, allowed)


def require_clean_dataset(root: str | Path, *, progress: bool = False) -> DatasetCheck:
    """:func:`check_dataset` (cached), raising when the dataset has errors: what every
    command that reads a dataset to train or plan runs first, so that no unchecked case
    reaches the planner or a loader.

    Raises:
        DatasetCheckError: The dataset has errors (every one of them in ``.check``).
    """
    check = check_dataset(root, progress=progress)
    if check.errors:
        raise DatasetCheckError(check)
    return check
