"""Jobs: what the user asked for, turned into configurations by one engine.

``fdseg train``, ``fdseg experiment``, cross-validation, ``torchrun`` and the Python API
all resolve their runs here (:func:`training_job`, :func:`experiment_job`): which
defaults apply (the built-in phantom's, a plan's, a recipe's), and resuming from a run's
own configuration. Importing this package is cheap; every public name is resolved on
first access (PEP 562), and planning and training import torch only when a job runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fdseg_core._lazy import lazy_attributes

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "PHANTOM_DATASET": "fdseg_core.jobs.default",
    "PHANTOM_TRAINING": "fdseg_core.jobs.default",
    "ensure_default_dataset": "fdseg_core.jobs.default",
    "PLANS": "fdseg_core.jobs.engine",
    "SIZE_FIELDS": "fdseg_core.jobs.engine",
    "TrainingJob": "fdseg_core.jobs.engine",
    "default_out": "fdseg_core.jobs.engine",
    "resolve_planned": "fdseg_core.jobs.engine",
    "resume_config": "fdseg_core.jobs.engine",
    "run_training_job": "fdseg_core.jobs.engine",
    "training_job": "fdseg_core.jobs.engine",
    "experiment_job": "fdseg_core.jobs.experiment",
    "run_experiment_job": "fdseg_core.jobs.experiment",
}

__all__ = [
    "PHANTOM_DATASET",
    "PHANTOM_TRAINING",
    "PLANS",
    "SIZE_FIELDS",
    "TrainingJob",
    "default_out",
    "ensure_default_dataset",
    "experiment_job",
    "resolve_planned",
    "resume_config",
    "run_experiment_job",
    "run_training_job",
    "training_job",
]

if TYPE_CHECKING:  # pragma: no cover
    from fdseg_core.jobs.default import PHANTOM_DATASET, PHANTOM_TRAINING, ensure_default_dataset
    from fdseg_core.jobs.engine import (
        PLANS,
        SIZE_FIELDS,
        TrainingJob,
        default_out,
        resolve_planned,
        resume_config,
        run_training_job,
        training_job,
    )
    from fdseg_core.jobs.experiment import experiment_job, run_experiment_job

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())
