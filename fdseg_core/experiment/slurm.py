"""An experiment's unfinished runs as one SLURM job array, through submitit.

``fdseg experiment ... --slurm`` submits one array task per unfinished run
(:func:`~fdseg_core.experiment.protocol.run_one`), capped at ``parallelism`` tasks at a
time, then waits for them and writes the report, or returns at once (``wait=False``):
a later ``fdseg experiment ... --report-only`` reports what has finished. submitit is
the optional extra ``fdseg[slurm]``; its local executor (``cluster="local"``) runs the
same array as processes on this machine, which is how it is tested here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdseg_core.experiment.protocol import (
    ExperimentConfig,
    experiment_report,
    grid,
    is_finished,
    prepare_experiment,
    run_one,
)
from fdseg_core.parallel import in_shard

__all__ = ["SlurmOptions", "submit_experiment"]


@dataclass(frozen=True)
class SlurmOptions:
    """The job array's resources.

    Attributes:
        partition: SLURM partition (``None``: the cluster's default).
        time_min: Time limit of each task, in minutes.
        gpus_per_task: GPUs of each task.
        cpus_per_task: CPU cores of each task.
        mem_gb: Memory of each task, in GB.
        parallelism: Tasks of the array running at once (``slurm_array_parallelism``).
        cluster: ``None`` (SLURM when there is one), ``"slurm"``, or ``"local"``
            (submitit's local executor: processes on this machine).
        folder: submitit's logs and pickles (default: ``OUT/slurm``).
    """

    partition: str | None = None
    time_min: int = 240
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 32
    parallelism: int = 8
    cluster: str | None = None
    folder: str | None = None

    def __post_init__(self) -> None:
        for name in ("time_min", "cpus_per_task", "mem_gb", "parallelism"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.gpus_per_task < 0:
            raise ValueError(f"gpus_per_task must be >= 0, got {self.gpus_per_task!r}")


def submit_experiment(
    config: ExperimentConfig,
    options: SlurmOptions,
    *,
    shard: tuple[int, int] | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    """Submit the unfinished runs as one job array; with ``wait``, wait and report.

    Returns:
        ``{"job_ids": [...], "submitted": [run names], "report": the report when
        ``wait`` (else ``None``)}``.

    Raises:
        ValueError: submitit is not installed (``pip install 'fdseg[slurm]'``).
    """
    try:
        import submitit  # the slurm extra, on use
    except ImportError as exc:
        raise ValueError("--slurm needs submitit: pip install 'fdseg[slurm]'") from exc
    prepare_experiment(config)
    todo = [r for r in in_shard(grid(config), shard) if not is_finished(config, r)]
    folder = Path(options.folder or Path(config.out) / "slurm")
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=options.cluster)
    params: dict[str, Any] = {
        "timeout_min": options.time_min,
        "cpus_per_task": options.cpus_per_task,
        "mem_gb": options.mem_gb,
        "name": f"fdseg-{Path(config.out).name}",
    }
    if executor.cluster == "slurm":
        params |= {
            "slurm_array_parallelism": options.parallelism,
            "gpus_per_node": options.gpus_per_task,
            "tasks_per_node": 1,
        }
        if options.partition:
            params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    jobs = (
        executor.map_array(run_one, [config] * len(todo), [r.index for r in todo]) if todo else []
    )
    submitted = {"job_ids": [j.job_id for j in jobs], "submitted": [r.name for r in todo]}
    if not wait:
        return {**submitted, "report": None}
    for job in jobs:
        job.result()  # raises the task's own error, with its log's path
    return {**submitted, "report": experiment_report(config)}
