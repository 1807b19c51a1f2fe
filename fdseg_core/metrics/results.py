"""What an evaluation measures, as typed objects: one row per (case, class), and per
class the statistics of every metric over its own cases."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["METRICS", "ClassMetrics", "ClassSummary", "EvaluationReport", "Statistic"]

#: The metrics of a (case, class), in column order.
METRICS = ("dice", "hd95_mm", "assd_mm", "pred_ml", "ref_ml")


@dataclass(frozen=True)
class ClassMetrics:
    """The metrics of one foreground class in one case.

    Attributes:
        case: The case id (``""`` before it is known).
        class_name: The class.
        dice: Dice (``nan`` when the class is in neither prediction nor reference).
        hd95_mm: The 95th-percentile Hausdorff distance in mm (``nan`` unless the class
            is in both).
        assd_mm: The average symmetric surface distance in mm (``nan`` likewise).
        pred_ml: The predicted volume in mL.
        ref_ml: The reference volume in mL.
    """

    case: str
    class_name: str
    dice: float
    hd95_mm: float
    assd_mm: float
    pred_ml: float
    ref_ml: float

    @property
    def present(self) -> bool:
        """Whether the class is in the prediction or the reference."""
        return self.pred_ml > 0 or self.ref_ml > 0

    def value(self, metric: str) -> float:
        """One of :data:`METRICS`."""
        if metric not in METRICS:
            raise ValueError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
        return float(getattr(self, metric))

    def to_dict(self) -> dict[str, Any]:
        """``{"case", "class", <metric>: value or None}``: a row of ``--json``
        (undefined values are ``None``; the CSV writes them as ``nan``)."""
        return {
            "case": self.case,
            "class": self.class_name,
            **{m: None if math.isnan(v := self.value(m)) else v for m in METRICS},
        }


@dataclass(frozen=True)
class Statistic:
    """The mean, sample standard deviation and count of one metric.

    Attributes:
        mean: The mean (``None`` when ``n`` is 0).
        std: The sample standard deviation (0 with one value, ``None`` with none).
        n: The values it summarises.
    """

    mean: float | None
    std: float | None
    n: int


@dataclass(frozen=True)
class ClassSummary:
    """Every metric's statistic for one class, each over its own cases.

    Attributes:
        metrics: ``{metric: statistic}`` for every metric of :data:`METRICS`.
        n_cases: Cases evaluated.
        n_absent: Cases left out of every statistic: the class is in neither prediction
            nor reference.
    """

    metrics: Mapping[str, Statistic]
    n_cases: int
    n_absent: int

    def __getitem__(self, metric: str) -> Statistic:
        return self.metrics[metric]

    def to_dict(self) -> dict[str, Any]:
        """``{metric: {"mean", "std", "n"}, "n_cases", "n_absent"}``."""
        stats = {m: asdict(s) for m, s in self.metrics.items()}
        return {**stats, "n_cases": self.n_cases, "n_absent": self.n_absent}


@dataclass(frozen=True)
class EvaluationReport:
    """An evaluation of predictions against references.

    Attributes:
        cases: One row per (case, class), cases in file-name order.
        summary: Per class, the statistics of every metric.
    """

    cases: tuple[ClassMetrics, ...]
    summary: Mapping[str, ClassSummary]

    def dice(self, case: str, class_name: str) -> float:
        """The Dice of one (case, class)."""
        for row in self.cases:
            if row.case == case and row.class_name == class_name:
                return row.dice
        raise KeyError(f"no row for case {case!r}, class {class_name!r}")

    def to_dict(self) -> dict[str, Any]:
        """``{"cases": [...], "summary": {...}}``: the ``--json`` file (strict JSON)."""
        return {
            "cases": [row.to_dict() for row in self.cases],
            "summary": {name: s.to_dict() for name, s in self.summary.items()},
        }
