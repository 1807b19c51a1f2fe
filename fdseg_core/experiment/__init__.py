"""The paper's experiment: training size x method x seed, with bootstrap statistics."""

from __future__ import annotations

from fdseg_core.experiment.protocol import ExperimentConfig, run_experiment
from fdseg_core.experiment.report import ExperimentReport, SummaryRow
from fdseg_core.experiment.results import CaseDice, RunResult, RunScores
from fdseg_core.experiment.stats import mean_std, paired_bootstrap_ci

__all__ = [
    "CaseDice",
    "ExperimentConfig",
    "ExperimentReport",
    "RunResult",
    "RunScores",
    "SummaryRow",
    "mean_std",
    "paired_bootstrap_ci",
    "run_experiment",
]
