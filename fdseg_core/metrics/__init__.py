"""Segmentation metrics: Dice, HD95, ASSD (mm) and volumes (mL)."""

from __future__ import annotations

from fdseg_core.metrics.evaluate import evaluate_folder, write_report
from fdseg_core.metrics.results import (
    METRICS,
    ClassMetrics,
    ClassSummary,
    EvaluationReport,
    Statistic,
)
from fdseg_core.metrics.surface import (
    assd,
    case_metrics,
    dice,
    dice_per_class,
    hd95,
    surface_distances,
    volume_ml,
)

__all__ = [
    "METRICS",
    "ClassMetrics",
    "ClassSummary",
    "EvaluationReport",
    "Statistic",
    "assd",
    "case_metrics",
    "dice",
    "dice_per_class",
    "evaluate_folder",
    "hd95",
    "surface_distances",
    "volume_ml",
    "write_report",
]
