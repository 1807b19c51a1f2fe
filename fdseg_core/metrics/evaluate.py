"""Evaluation of a folder of predictions against a folder of labels."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from fdseg_core.atomic import atomic_write_text
from fdseg_core.data.checks import AFFINE_TOLERANCE
from fdseg_core.data.io import load_nifti, voxel_spacing
from fdseg_core.data.layout import strip_nifti_ending
from fdseg_core.errors import InputError
from fdseg_core.metrics.surface import case_metrics

__all__ = ["evaluate_folder", "summarise", "write_report", "METRICS"]

METRICS = ("dice", "hd95_mm", "assd_mm", "pred_ml", "ref_ml")


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
) -> dict:
    """Per case and class: Dice, HD95 and ASSD (mm), volumes (mL); means and stds.

    Predictions are matched to labels by file name (``case.nii.gz``).

    Args:
        pred_dir: Folder of predicted label maps.
        label_dir: Folder of reference label maps.
        labels: Class name -> value (default: every non-zero value found, named by value).

    Returns:
        ``{"cases": [{"case", "class", metrics...}], "summary": {class: {metric: {mean,
        std, n}, "n_cases": int, "n_absent": int}}}``. Each statistic has its own
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
            rows.append({"case": case, **row})
    return {"cases": rows, "summary": summarise(rows)}


def _present(row: dict) -> bool:
    """Whether the class is in the prediction or the reference of this case."""
    return row["pred_ml"] > 0 or row["ref_ml"] > 0


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Mean, sample std and ``n`` of every metric per class, each over its own cases.

    Rows whose class is absent from both prediction and reference are left out of
    every statistic (counted in ``n_absent``); undefined values (NaN: HD95 / ASSD when
    one side is empty) are left out of their own statistic only.

    Args:
        rows: Per (case, class) rows of :func:`case_metrics` with a ``"class"`` key.

    Returns:
        ``{class: {metric: {"mean", "std", "n"}, "n_cases", "n_absent"}}``; ``mean``
        and ``std`` are ``None`` when ``n == 0``.
    """
    summary: dict[str, dict] = {}
    for cls in dict.fromkeys(r["class"] for r in rows):
        mine = [r for r in rows if r["class"] == cls]
        present = [r for r in mine if _present(r)]
        summary[cls] = {}
        for m in METRICS:
            vals = np.array([r[m] for r in present], dtype=np.float64)
            vals = vals[~np.isnan(vals)]
            summary[cls][m] = {
                "mean": float(vals.mean()) if vals.size else None,
                "std": float(vals.std(ddof=1)) if vals.size > 1 else (0.0 if vals.size else None),
                "n": int(vals.size),
            }
        summary[cls]["n_cases"] = len(mine)
        summary[cls]["n_absent"] = len(mine) - len(present)
    return summary


def _clean(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def write_report(
    report: dict, *, json_path: str | Path | None = None, csv_path: str | Path | None = None
) -> None:
    """Write the report as JSON and/or CSV (one row per case and class), atomically,
    making the folders they go into."""
    for path in (json_path, csv_path):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    if json_path is not None:
        clean = {
            "cases": [{k: _clean(v) for k, v in r.items()} for r in report["cases"]],
            "summary": report["summary"],
        }
        atomic_write_text(Path(json_path), json.dumps(clean, indent=1) + "\n")
    if csv_path is not None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["case", "class", *METRICS])
        writer.writeheader()
        writer.writerows(report["cases"])
        atomic_write_text(Path(csv_path), buf.getvalue())
