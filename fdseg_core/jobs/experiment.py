"""An experiment, resolved by the same engine as one training run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fdseg_core.choices import DEFAULT_MEMORY_GB, PER_RUN_FIELDS
from fdseg_core.jobs.engine import TrainingJob, training_job

if TYPE_CHECKING:  # the experiment imports torch: only where it runs
    from fdseg_core.experiment import ExperimentConfig, ExperimentReport
    from fdseg_core.experiment.protocol import PlanRecord
    from fdseg_core.experiment.slurm import ArraySubmission, SlurmOptions

__all__ = ["experiment_job", "run_experiment_job"]


def experiment_job(
    dataset: str | Path,
    out: str | Path,
    *,
    given: Mapping[str, Any] | None = None,
    planning: bool = True,
    memory_gb: float = DEFAULT_MEMORY_GB,
    progress: bool = False,
    **experiment: Any,
) -> tuple[ExperimentConfig, TrainingJob]:
    """The :class:`~fdseg_core.experiment.ExperimentConfig` of an experiment whose runs
    are planned as ``fdseg train`` plans one run.

    The template every run starts from is resolved by :func:`training_job` (your
    fields, then the recipe's, then the plan's or the defaults), without the fields
    the experiment sets per run (fusion, training size, seed; the layout too when
    ``layouts`` are given). The plan is made once for the dataset, recorded in the
    experiment's ``plans.json`` and ``experiment.json``, and read back when the
    experiment continues.

    Args:
        dataset: The dataset root.
        out: The experiment folder.
        given: The training fields the user set (``recipe`` included); ``seed`` is the
            first seed.
        planning: Plan sizes from the dataset when ``given`` has no size field.
        memory_gb: The memory budget of one training step, for the plan.
        progress: A progress bar while the dataset is fingerprinted.
        **experiment: The other :class:`~fdseg_core.experiment.ExperimentConfig`
            fields (``train_sizes``, ``fusions``, ``seeds``, ``layouts``, ...).

    Returns:
        ``(config, job)``: the experiment, and the resolved template's job (its
        ``applied`` recipe values and ``notes`` to print).
    """
    from fdseg_core.experiment import ExperimentConfig  # lazy: the protocol imports torch

    given = dict(given or {})
    first_seed = given.pop("seed", 0)
    for key in ("fusion", "train_cases"):
        given.pop(key, None)
    if "case_draw" in given:
        experiment.setdefault("case_draw", given.pop("case_draw"))
    job = training_job(
        dataset, out, given=given, planning=planning, memory_gb=memory_gb, progress=progress
    )
    fields = job.config.to_dict()
    applied = dict(job.applied)
    drop = set(PER_RUN_FIELDS) | ({"layout"} if experiment.get("layouts") else set())
    for key in drop:
        fields.pop(key, None)
        applied.pop(key, None)
    template = {k: v for k, v in fields.items() if k not in ("dataset", "out")}
    config = ExperimentConfig(
        dataset=str(dataset),
        out=str(out),
        training=template,
        first_seed=first_seed,
        plan=_plan_record(job),
        **experiment,
    )
    return config, TrainingJob(
        config=job.config, applied=applied, defaults=job.defaults, notes=job.notes, plan=job.plan
    )


def _plan_record(job: TrainingJob) -> PlanRecord | None:
    """What the experiment records of its plan: where the sizes came from, and them."""
    from fdseg_core.experiment.protocol import PlanRecord  # lazy: the protocol imports torch

    if job.defaults not in ("plan", "plans.json"):
        return None
    c = job.config
    return PlanRecord(
        source=job.defaults,
        target_spacing=tuple(c.target_spacing) if c.target_spacing else None,
        patch_size=c.patch_size if isinstance(c.patch_size, str) else tuple(c.patch_size),
        batch_size=c.batch_size,
    )


def run_experiment_job(
    config: ExperimentConfig,
    job: TrainingJob,
    *,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    jobs: int = 1,
    report_only: bool = False,
    slurm: SlurmOptions | None = None,
    wait: bool = True,
) -> ExperimentReport | ArraySubmission:
    """Run (or continue) the experiment, and record a plan made now in its
    ``plans.json`` once it has started (a refused experiment writes nothing).

    Args:
        config: The experiment (:func:`experiment_job`).
        job: Its resolved template.
        progress: A progress bar over the runs.
        shard: ``(K, N)``: only the runs of shard K of N.
        jobs: Runs at once on this machine, one process each.
        report_only: Train nothing; report the results there are.
        slurm: :class:`~fdseg_core.experiment.slurm.SlurmOptions`: submit the unfinished
            runs as one SLURM job array instead of running them here.
        wait: With ``slurm``, wait for the array and report; else return at once.

    Returns:
        The report of :func:`fdseg_core.experiment.run_experiment`, or with ``slurm``
        the submission (with the report when it waited).
    """
    from fdseg_core.experiment import run_experiment  # lazy: the protocol imports torch

    try:
        if slurm is not None and not report_only:
            from fdseg_core.experiment.slurm import submit_experiment  # lazy: submitit

            return submit_experiment(config, slurm, shard=shard, wait=wait)
        return run_experiment(
            config, progress=progress, shard=shard, jobs=jobs, report_only=report_only
        )
    finally:
        if (Path(config.out) / "experiment.json").is_file():
            job.save_plan(config.out)
