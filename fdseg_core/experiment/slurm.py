"""An experiment's unfinished runs as one SLURM job array, through submitit.

``fdseg experiment ... --slurm`` submits one array task per unfinished run
(:func:`~fdseg_core.experiment.protocol.run_one`), capped at ``parallelism`` tasks at a
time, then waits for them (one line each time the counts of pending, running, finished
and failed runs change) and writes the report, or returns at once (``wait=False``): a
later ``fdseg experiment ... --report-only`` reports what has finished. Without SLURM
(no ``sbatch`` on ``PATH``) it refuses in one line before anything is written; submitit's
local executor, which runs the same array as processes on this machine, is a choice of
its own (``local=True``, ``--slurm-local``). submitit is the optional extra
``fdseg[slurm]``.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fdseg_core.errors import InputError, MissingExtraError, OptionError
from fdseg_core.experiment.protocol import (
    ExperimentConfig,
    experiment_report,
    grid,
    is_finished,
    prepare_experiment,
    run_one,
)
from fdseg_core.experiment.report import ExperimentReport
from fdseg_core.parallel import in_shard

__all__ = ["ArraySubmission", "SlurmOptions", "job_states", "submit_experiment"]

logger = logging.getLogger(__name__)

#: submitit's (and SLURM's) job states, by what they mean for a run.
_STATES = {
    "pending": {"PENDING", "REQUEUED", "CONFIGURING", "UNKNOWN", "QUEUED", "SUSPENDED"},
    "running": {"RUNNING", "COMPLETING"},
    "finished": {"COMPLETED", "FINISHED", "DONE"},
}


@dataclass(frozen=True)
class SlurmOptions:
    """The job array's resources, and where it runs.

    Attributes:
        partition: SLURM partition (``None``: the cluster's default).
        time_min: Time limit of each task, in minutes.
        gpus_per_task: GPUs of each task.
        cpus_per_task: CPU cores of each task.
        mem_gb: Memory of each task, in GB.
        parallelism: Tasks of the array running at once (``--array=...%N``).
        account: SLURM account to charge (``None``: the user's default).
        qos: SLURM quality of service (``None``: the default).
        constraint: SLURM node features (``--constraint``, e.g. ``"a100"``).
        local: Run the array's tasks as processes on this machine through submitit's
            local executor instead of submitting them to SLURM.
        folder: submitit's logs and pickles (default: ``OUT/slurm``).
        poll_s: Seconds between two looks at the jobs while waiting.
    """

    partition: str | None = None
    time_min: int = 240
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 32
    parallelism: int = 8
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    local: bool = False
    folder: str | None = None
    poll_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("time_min", "cpus_per_task", "mem_gb", "parallelism"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if self.gpus_per_task < 0:
            raise InputError(f"gpus_per_task must be >= 0, got {self.gpus_per_task!r}")
        if not self.poll_s > 0:
            raise InputError(f"poll_s must be positive, got {self.poll_s!r}")

    def check(self) -> None:
        """Refuse, in one line and before anything is written, a SLURM submission from a
        machine without SLURM, or without submitit.

        Raises:
            OptionError: No ``sbatch`` on ``PATH`` (names ``--slurm`` and
                ``--slurm-local``), or submitit is missing (the slurm extra).
        """
        try:
            import submitit  # noqa: F401  (the slurm extra, on use)
        except ImportError as exc:
            raise MissingExtraError("--slurm (submitit)", "slurm") from exc
        if not self.local and shutil.which("sbatch") is None:
            raise OptionError(
                "{slurm}: SLURM's sbatch is not on PATH, so nothing can be submitted from "
                "here; run on a machine with SLURM (a login node, or `module load slurm`), "
                "or use {slurm_local} to run the array's tasks as processes on this machine",
                "slurm",
                "slurm_local",
            )


def job_states(states: Sequence[str]) -> dict[str, int]:
    """How many jobs are pending, running, finished and failed, from submitit's states
    (SLURM's, e.g. ``"PENDING"``, ``"COMPLETED"``, ``"CANCELLED by 0"``; or the local
    executor's)."""
    counts = dict.fromkeys(("pending", "running", "finished", "failed"), 0)
    for state in states:
        word = state.split()[0].upper() if state else "UNKNOWN"
        kind = next((k for k, words in _STATES.items() if word in words), "failed")
        counts[kind] += 1
    return counts


@dataclass(frozen=True)
class ArraySubmission:
    """The unfinished runs of an experiment, submitted as one job array.

    Attributes:
        job_ids: submitit's id of each task.
        array: The array's SLURM id (``None`` on the local executor or when nothing was
            submitted).
        submitted: The runs submitted, by name.
        local: Whether the tasks ran through submitit's local executor.
        report: The report once the array finished (``None`` when not waited for).
    """

    job_ids: tuple[str, ...]
    array: str | None
    submitted: tuple[str, ...]
    local: bool
    report: ExperimentReport | None = None


def submit_experiment(
    config: ExperimentConfig,
    options: SlurmOptions,
    *,
    shard: tuple[int, int] | None = None,
    wait: bool = True,
    say: Callable[[str], None] | None = None,
) -> ArraySubmission:
    """Submit the unfinished runs as one job array; with ``wait``, wait and report.

    Args:
        config: The experiment.
        options: The array's resources and where it runs.
        shard: ``(K, N)``: only the unfinished runs of shard K of N.
        wait: Wait for the array (a line each time its counts change), then report.
        say: Where those lines go (default: this module's logger).

    Returns:
        The submission, with the report when ``wait``.

    Raises:
        OptionError: No SLURM here and not ``local``, or no submitit (before any file).
    """
    options.check()
    import submitit  # the slurm extra, checked above

    say = say or logger.info
    todo = [r for r in in_shard(grid(config), shard) if not is_finished(config, r)]
    prepare_experiment(config)
    folder = Path(options.folder or Path(config.out) / "slurm")
    jobs: list[Any] = []
    if todo:
        cluster = "local" if options.local else "slurm"
        # %j: one folder per job, named by its id (submitit fills it in)
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
        executor.update_parameters(**_parameters(config, options, cluster))
        jobs = executor.map_array(run_one, [config] * len(todo), [r.index for r in todo])
    array = jobs[0].job_id.split("_")[0] if jobs and not options.local else None
    submitted = ArraySubmission(
        job_ids=tuple(j.job_id for j in jobs),
        array=array,
        submitted=tuple(r.name for r in todo),
        local=options.local,
    )
    if not wait:
        return submitted
    _wait(jobs, options.poll_s, say)
    _remove_empty_folders(folder)
    for job in jobs:
        job.result()  # raises the task's own error, with its log's path
    return replace(submitted, report=experiment_report(config))


def _parameters(config: ExperimentConfig, options: SlurmOptions, cluster: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "timeout_min": options.time_min,
        "cpus_per_task": options.cpus_per_task,
        "mem_gb": options.mem_gb,
        "name": f"fdseg-{Path(config.out).name}",
    }
    if cluster == "slurm":
        params |= {
            "slurm_array_parallelism": options.parallelism,
            "gpus_per_node": options.gpus_per_task,
            "tasks_per_node": 1,
        }
        for key in ("partition", "account", "qos", "constraint"):
            value = getattr(options, key)
            if value:
                params[f"slurm_{key}"] = value
    return params


def _wait(jobs: Sequence[Any], poll_s: float, say: Callable[[str], None]) -> None:
    """Look at the jobs every ``poll_s`` seconds; a line each time the counts change."""
    last = None
    while True:
        counts = job_states([job.state for job in jobs])
        if counts != last:
            say(
                f"runs: {counts['pending']} pending, {counts['running']} running, "
                f"{counts['finished']} finished, {counts['failed']} failed"
            )
            last = counts
        if all(job.done() for job in jobs):
            return
        time.sleep(poll_s)


def _remove_empty_folders(folder: Path) -> None:
    """Remove the empty folders submitit left under ``folder`` (and it, when empty)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()
