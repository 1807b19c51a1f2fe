"""The perturbation audit: how trained models degrade on scans that differ from their
training scans (MRI artifacts, spectral changes, intensity changes), paired across
models and, for an experiment, compared with the baseline at seed level.

Importing this package is cheap; every public name is resolved on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fdseg_core._lazy import lazy_attributes

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "KINDS": "fdseg_core.robustness.perturbations",
    "LEVELS": "fdseg_core.robustness.perturbations",
    "SUITE_VERSION": "fdseg_core.robustness.perturbations",
    "Perturbation": "fdseg_core.robustness.perturbations",
    "PerturbationSuite": "fdseg_core.robustness.perturbations",
    "perturb": "fdseg_core.robustness.perturbations",
    "AuditCoverage": "fdseg_core.robustness.scoring",
    "AuditInterrupted": "fdseg_core.robustness.scoring",
    "AuditModel": "fdseg_core.robustness.scoring",
    "PerturbationSummary": "fdseg_core.robustness.scoring",
    "PerturbedScore": "fdseg_core.robustness.scoring",
    "RobustnessResult": "fdseg_core.robustness.scoring",
    "audit": "fdseg_core.robustness.scoring",
    "coverage": "fdseg_core.robustness.scoring",
    "experiment_models": "fdseg_core.robustness.scoring",
    "labelled_cases": "fdseg_core.robustness.scoring",
    "models_from_paths": "fdseg_core.robustness.scoring",
    "ScoreStore": "fdseg_core.robustness.store",
}

__all__ = [
    "KINDS",
    "LEVELS",
    "SUITE_VERSION",
    "AuditCoverage",
    "AuditInterrupted",
    "AuditModel",
    "Perturbation",
    "PerturbationSuite",
    "PerturbationSummary",
    "PerturbedScore",
    "RobustnessResult",
    "ScoreStore",
    "audit",
    "coverage",
    "experiment_models",
    "labelled_cases",
    "models_from_paths",
    "perturb",
]

if TYPE_CHECKING:  # pragma: no cover
    from fdseg_core.robustness.perturbations import (
        KINDS,
        LEVELS,
        SUITE_VERSION,
        Perturbation,
        PerturbationSuite,
        perturb,
    )
    from fdseg_core.robustness.scoring import (
        AuditCoverage,
        AuditInterrupted,
        AuditModel,
        PerturbationSummary,
        PerturbedScore,
        RobustnessResult,
        audit,
        coverage,
        experiment_models,
        labelled_cases,
        models_from_paths,
    )
    from fdseg_core.robustness.store import ScoreStore

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())
