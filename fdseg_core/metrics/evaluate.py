"""Evaluation of a folder of predictions against a folder of labels."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from fdseg_core.atomic import atomic_write_text
from fdseg_core.data.checks import AFFINE_TOLERANCE
from fdseg_core.data.io import load_nifti, voxel_spacing
from fdseg_core.data.layout import strip_nifti_ending
from fdseg_core.errors import InputError
from fdseg_core.metrics.results import (
    METRICS,
    ClassMetrics,
    ClassSummary,
    EvaluationReport,
    Statistic,
)
from fdseg_core.metrics.surface import case_metrics

__all__ = ["evaluate_folder", "summarise", "write_report", "METRICS"]


def _nifti_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist")
    out = {}
    for p in sorted(folder.iterdir()):
        stem = strip_nifti_ending(p.name)
        if stem is not None and not p.name.startswith("."):
            out[stem] = p
    return out


def evaluate_folder(
    pred_dir: str | Path, label_dir: str | Path, *, labels: dict[str, int] | None = None
) -> EvaluationReport:
    """Per case and class: Dice, HD95 and ASSD (mm), volumes (mL); means and stds.

    Predictions are matched to labels by file name (``case.nii.gz``).

    Args:
        pred_dir: Folder of predicted label maps.
        label_dir: Folder of reference label maps.
        labels: Class name -> value (default: every non-zero value found, named by value).

    Returns:
        A row per (case, class) and a summary per class. Each statistic has its own
        ``n``: a (case, class) enters the Dice and volume statistics when the class is in
        the prediction or the reference (absent from both, nothing is measured: Dice is
        undefined and 0 mL against 0 mL would pull the volume means towards 0), and the
        HD95 / ASSD statistics when it is in both. ``n_absent`` counts the cases left out
        because the class is in neither; ``docs/metrics.md``.

    Raises:
        ValueError: A prediction whose grid (shape, affine) differs from its label's, or
            a label without prediction (the message names the case).
    """
    preds, refs = _nifti_files(Path(pred_dir)), _nifti_files(Path(label_dir))
    if not refs:
        raise InputError(f"{label_dir} holds no NIfTI label")
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise InputError(f"no prediction for case(s) {missing} in {pred_dir}")
    rows = []
    for case, ref_path in refs.items():
        pimg = load_nifti(preds[case], case=case)
        rimg = load_nifti(ref_path, case=case)
        if pimg.shape[:3] != rimg.shape[:3] or not np.allclose(
            pimg.affine, rimg.affine, atol=AFFINE_TOLERANCE
        ):
            raise InputError(
                f"case {case!r}: prediction {preds[case]} (shape {pimg.shape}) is "
                f"not on the grid of its label {ref_path} (shape {rimg.shape})"
            )
        pred = np.asanyarray(pimg.dataobj).astype(np.int64)
        ref = np.asanyarray(rimg.dataobj).astype(np.int64)
        names = labels or {
            str(int(v)): int(v)
            for v in np.unique(np.concatenate([np.unique(pred), np.unique(ref)]))
            if v != 0
        }
        for row in case_metrics(pred, ref, voxel_spacing(rimg.affine), names):
            rows.append(replace(row, case=case))
    return EvaluationReport(cases=tuple(rows), summary=summarise(rows))


def summarise(rows: Sequence[ClassMetrics]) -> dict[str, ClassSummary]:
    """Mean, sample std and ``n`` of every metric per class, each over its own cases.

    Rows whose class is absent from both prediction and reference are left out of
    every statistic (counted in ``n_absent``); undefined values (NaN: HD95 / ASSD when
    one side is empty) are left out of their own statistic only.

    Args:
        rows: Per (case, class) rows (:func:`~fdseg_core.metrics.surface.case_metrics`).

    Returns:
        ``{class: summary}`` in order of first appearance.
    """
    summary: dict[str, ClassSummary] = {}
    for cls in dict.fromkeys(r.class_name for r in rows):
        mine = [r for r in rows if r.class_name == cls]
        present = [r for r in mine if r.present]
        stats = {}
        for m in METRICS:
            vals = np.array([r.value(m) for r in present], dtype=np.float64)
            vals = vals[~np.isnan(vals)]
            stats[m] = Statistic(
                mean=float(vals.mean()) if vals.size else None,
                std=float(vals.std(ddof=1)) if vals.size > 1 else (0.0 if vals.size else None),
                n=int(vals.size),
            )
        summary[cls] = ClassSummary(stats, n_cases=len(mine), n_absent=len(mine) - len(present))
    return summary


def write_report(
    report: EvaluationReport,
    *,
    json_path: str | Path | None = None,
    csv_path: str | Path | None = None,
) -> None:
    """Write the report as JSON and/or CSV (one row per case and class), atomically,
    making the folders they go into."""
    for path in (json_path, csv_path):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    if json_path is not None:
        text = json.dumps(report.to_dict(), indent=1, allow_nan=False)
        atomic_write_text(Path(json_path), text + "\n")
    if csv_path is not None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["case", "class", *METRICS])
        writer.writeheader()
        # undefined values as "nan", as the CSV always wrote them
        writer.writerows({"case": r.case, "class": r.class_name, **{m: r.value(m) for m in METRICS}}
                         for r in report.cases)  # fmt: skip
        atomic_write_text(Path(csv_path), buf.getvalue())
