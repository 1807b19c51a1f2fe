"""The paper's protocol: training size x method x seed, evaluated on the same test cases."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch

from fdseg_core.atomic import atomic_write_text
from fdseg_core.choices import (
    CASE_DRAWS,
    DEFAULT_MARGIN,
    FUSIONS,
    LAYOUTS,
    PER_RUN_FIELDS,
)
from fdseg_core.data import (
    ALL_FOLD,
    fold_cases,
    load_dataset,
    plan_folds,
)
from fdseg_core.errors import InputError, OptionError
from fdseg_core.experiment.report import ExperimentReport, write_report
from fdseg_core.experiment.results import RESULT, CaseDice, RunResult, RunTimes, load_run
from fdseg_core.experiment.stats import N_RESAMPLES, few_seeds_note
from fdseg_core.parallel import in_shard, parallel_map
from fdseg_core.progress import progress_bar
from fdseg_core.provenance import code_provenance, machine_provenance
from fdseg_core.runlock import RunLock, RunLockedError
from fdseg_core.train.config import TrainConfig
from fdseg_core.train.evaluation import evaluate_checkpoint
from fdseg_core.train.loop import resolve_device, train
from fdseg_core.train.results import TrainResult
from fdseg_core.train.tracking import log_report

__all__ = [
    "ExperimentConfig",
    "PlanRecord",
    "RunSpec",
    "evaluate_run",
    "experiment_report",
    "grid",
    "held_out_cases",
    "is_finished",
    "prepare_experiment",
    "relative_to",
    "run_experiment",
    "run_indices",
    "run_list",
    "run_one",
]

logger = logging.getLogger(__name__)


class _OncePerMessage(logging.Filter):
    """Let each distinct message through once (the runs of an experiment share their
    dataset, so each would repeat the same note about its folds)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


@dataclass(frozen=True)
class PlanRecord:
    """Where an experiment's template took its sizes from, as ``experiment.json`` records
    it.

    Attributes:
        source: ``"plan"`` (planned now) or ``"plans.json"`` (read back).
        target_spacing: The voxel size (mm), or ``None`` for the native grid.
        patch_size: The training patch ``(X, Y, Z)`` (or ``"auto"``).
        batch_size: Patches per step (or ``"auto"``).
    """

    source: str
    target_spacing: tuple[float, ...] | None
    patch_size: tuple[int, ...] | str
    batch_size: int | str

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON form (lists for tuples)."""
        return {
            "source": self.source,
            "target_spacing": _listed(self.target_spacing),
            "patch_size": _listed(self.patch_size),
            "batch_size": self.batch_size,
        }


def _listed(value):
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class ExperimentConfig:
    """An experiment: every (training size, method, seed) is one training run.

    Attributes:
        dataset: Dataset root (nnU-Net v2 or MSD layout).
        out: Output folder: ``runs/`` (one folder per run), ``results.jsonl``,
            ``table.csv``, ``table.md``, ``dice_vs_size.png``, ``training_curves.png``.
        train_sizes: Training-set sizes.
        fusions: Fusions (``"none"`` is the baseline every other is compared with).
        layouts: Band layouts to compare (``()``: the template's one). With two or more,
            every fusion other than ``"none"`` runs once per layout, as the method
            ``"<fusion>-<layout>"`` (the baseline has no bands).
        seeds: Number of seeds per (size, method): ``first_seed .. first_seed + seeds - 1``.
        first_seed: The first seed.
        training: The :class:`TrainConfig` every run starts from; each run replaces its
            ``out``, ``fusion``, ``train_cases``, ``seed``, ``case_draw`` (and ``layout`` with
            ``layouts``). A dict of ``TrainConfig`` fields is turned into one (its
            ``dataset`` and ``out`` are the experiment's; the fields the experiment sets
            per run are refused).
        n_resamples: Bootstrap resamples of the confidence intervals.
        checkpoint: Which checkpoint of each run is evaluated: ``"last"``, or ``"best"``
            (the best validation Dice; the one early stopping selects).
        plan: The plan the template's sizes came from, recorded in ``experiment.json``
            (``None``: none; :func:`fdseg_core.jobs.experiment_job` plans as ``fdseg
            train`` does).
        case_draw: How each run's training cases are drawn from the fold's pool
            (:func:`fdseg_core.data.select_subset`): ``"independent"``, a draw per seed
            and size, so that the sizes of one seed are not nested and share cases only
            by chance; or ``"nested"``, one permutation per seed whose first N cases
            each size takes.
        margin: The equivalence margin of the report's verdicts, in Dice: an interval
            within ±margin says that no effect beyond it exists; one that includes 0
            and reaches beyond is "not detected".
    """

    dataset: str
    out: str
    train_sizes: tuple[int, ...] = (2, 4, 8)
    fusions: tuple[str, ...] = FUSIONS
    seeds: int = 3
    first_seed: int = 0
    training: TrainConfig | None = None
    n_resamples: int = N_RESAMPLES
    layouts: tuple[str, ...] = ()
    checkpoint: str = "best"
    plan: PlanRecord | None = None
    case_draw: str = "independent"
    margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_sizes", tuple(self.train_sizes))
        object.__setattr__(self, "fusions", tuple(self.fusions))
        object.__setattr__(self, "layouts", tuple(self.layouts))
        bad_layouts = [x for x in self.layouts if x not in LAYOUTS]
        if bad_layouts or len(set(self.layouts)) != len(self.layouts):
            raise InputError(
                f"layouts must be distinct values of {list(LAYOUTS)}, got {list(self.layouts)!r}"
            )
        if not isinstance(self.training, TrainConfig):
            object.__setattr__(self, "training", self._template(dict(self.training or {})))
        if not 0.0 < self.margin < 1.0:
            raise InputError(f"margin must lie in (0, 1) (Dice), got {self.margin!r}")
        if self.case_draw not in CASE_DRAWS:
            raise InputError(f"case_draw must be one of {list(CASE_DRAWS)}, got {self.case_draw!r}")
        if self.checkpoint not in ("last", "best"):
            raise InputError(f"checkpoint must be 'last' or 'best', got {self.checkpoint!r}")
        if not self.train_sizes or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.train_sizes
        ):
            raise InputError(f"train_sizes must be positive integers, got {self.train_sizes!r}")
        bad = [f for f in self.fusions if f not in FUSIONS]
        if bad or not self.fusions:
            raise InputError(
                f"fusions must be a non-empty subset of {list(FUSIONS)}, got {list(self.fusions)!r}"
            )
        if len(set(self.fusions)) != len(self.fusions):
            raise InputError(f"fusions repeat a method: {list(self.fusions)!r}")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise InputError(f"seeds must be a positive integer, got {self.seeds!r}")

    def _template(self, fields: dict[str, Any]) -> TrainConfig:
        reserved = {"dataset", "out", "fusion", "train_cases", "seed", "case_draw"} & set(fields)
        if reserved:
            raise InputError(f"training options {sorted(reserved)} are set by the experiment")
        if self.layouts and "layout" in fields:
            raise InputError("give the layout either in layouts or in the training options")
        return TrainConfig(dataset=self.dataset, out=self.out, **fields)

    @property
    def methods(self) -> list[tuple[str, str, str | None]]:
        """``(label, fusion, layout)`` of every method; ``layout`` ``None``: the
        template's."""
        out: list[tuple[str, str, str | None]] = []
        for fusion in self.fusions:
            if fusion == "none" or len(self.layouts) < 2:
                out.append((fusion, fusion, self.layouts[0] if self.layouts else None))
            else:
                out.extend((f"{fusion}-{layout}", fusion, layout) for layout in self.layouts)
        return out

    def run_dir(self, size: int, method: str, seed: int) -> Path:
        return Path(self.out) / "runs" / f"n{size:03d}-{method}-s{seed}"

    def run_config(self, size: int, method: str, seed: int) -> TrainConfig:
        """The template with this run's output folder, fusion, layout, size and seed."""
        by_label = {label: (fusion, layout) for label, fusion, layout in self.methods}
        if method not in by_label:
            raise InputError(f"unknown method {method!r}; expected one of {list(by_label)}")
        fusion, layout = by_label[method]
        template = cast(TrainConfig, self.training)  # made one in __post_init__
        return template.replace(
            dataset=self.dataset,
            out=str(self.run_dir(size, method, seed)),
            fusion=fusion,
            layout=layout if layout is not None else template.layout,
            train_cases=size,
            seed=seed,
            case_draw=self.case_draw,
        )


def held_out_cases(info) -> tuple[list, str]:
    """The held-out labelled test cases: ``imagesTs`` + ``labelsTs`` when present, else
    ``[]`` (:func:`run_experiment` then holds out the validation cases of the runs'
    fold, which never enter training)."""
    labelled = [c for c in info.test if c.label_path is not None]
    if labelled:
        return labelled, "imagesTs/labelsTs"
    return [], "fold validation cases"


def evaluate_run(
    checkpoint: Path, cases: list, device: torch.device, *, overlap: float | None = None
) -> tuple[CaseDice, ...]:
    """Dice per class of one trained run on the test cases (full volumes), with labels
    by the rule of the run's loss (softmax argmax, or the sigmoid rule), scored on each
    case's own grid against its own label, as ``fdseg predict`` and ``fdseg evaluate``
    score it (a run trained at another spacing has its probabilities resampled back
    first).

    Args:
        checkpoint: The run's ``best.pt`` or ``last.pt``.
        cases: Labelled cases.
        device: Where the model runs.
        overlap: Sliding-window overlap (``None``: the run's own, ``TrainConfig.overlap``,
            the one its validation used). Windows are batched as the run's validation
            batched them (its ``batch_size``).

    Returns:
        The Dice of every foreground class, one per case.
    """
    # scored as `fdseg predict` + `fdseg evaluate` score it: on each case's own grid
    scores, card = evaluate_checkpoint(checkpoint, cases, device, overlap=overlap)
    names = card.class_names
    return tuple(
        CaseDice(
            score.case_id,
            {str(names.get(c, c)): float(score.dice[c]) for c in range(1, card.num_classes)},
        )
        for score in scores
    )


def _held_out(config: ExperimentConfig, info) -> tuple[list[str], list, str, Any]:
    """The training pool of the runs' fold, the held-out cases and where they come from.

    The fold rule is the one training uses (:func:`fdseg_core.data.fold_cases`), so the
    fold's validation cases, held out when the dataset has no labelled test cases,
    never enter a run's training.
    """
    held_out, source = held_out_cases(info)
    template = cast(TrainConfig, config.training)
    ids = [c.case_id for c in info.training]
    plan = plan_folds(len(ids), template.n_folds, template.fold)
    if plan.fold == ALL_FOLD and not held_out:
        raise InputError(
            f"{config.dataset}: the experiment needs held-out test cases, but there is no "
            "imagesTs/labelsTs and the runs train on every training case (fold 'all')"
        )
    pool, val_ids, _ = fold_cases(ids, plan)
    if not held_out:
        by_id = {c.case_id: c for c in info.training}
        held_out = [by_id[i] for i in val_ids]
        source = f"fold {plan.fold} validation cases"
    too_large = [s for s in config.train_sizes if s > len(pool)]
    if too_large:
        raise OptionError(
            f"{{train_sizes}} {','.join(map(str, too_large))}: fold {plan.fold} holds only "
            f"{len(pool)} training cases",
            "train_sizes",
        )
    return pool, held_out, source, plan


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment's grid.

    Attributes:
        index: Its place in the grid's fixed order (training sizes, then seeds, then
            methods), from 0: what ``--shard`` and job arrays count.
        train_size: Training cases.
        method: Method label (``"none"``, ``"early"``, ``"early-reference"``, ...).
        seed: Seed.
    """

    index: int
    train_size: int
    method: str
    seed: int

    @property
    def name(self) -> str:
        """The run's folder name, ``n002-early-s0``."""
        return f"n{self.train_size:03d}-{self.method}-s{self.seed}"


def grid(config: ExperimentConfig) -> list[RunSpec]:
    """Every run of the experiment in its fixed, documented order: training sizes as
    given, then seeds from ``first_seed``, then methods as
    :attr:`ExperimentConfig.methods` lists them."""
    runs = [
        (size, label, seed)
        for size in config.train_sizes
        for seed in range(config.first_seed, config.first_seed + config.seeds)
        for label, _, _ in config.methods
    ]
    return [RunSpec(i, size, label, seed) for i, (size, label, seed) in enumerate(runs)]


def is_finished(config: ExperimentConfig, run: RunSpec) -> bool:
    """Whether the run has its ``result.json``."""
    return (config.run_dir(run.train_size, run.method, run.seed) / RESULT).is_file()


def run_list(config: ExperimentConfig) -> list[tuple[RunSpec, bool]]:
    """Every run in the fixed order, with whether it has finished (``--list``).

    Raises:
        OptionError: A training size the dataset's fold cannot supply (the checks a run
            of the experiment would make, so that a listed grid is one that runs).
    """
    _held_out(config, load_dataset(config.dataset))
    return [(run, is_finished(config, run)) for run in grid(config)]


def prepare_experiment(config: ExperimentConfig) -> tuple[list, str]:
    """Check the experiment against its dataset (held-out cases, sizes), then write
    ``experiment.json``: every check that can refuse it runs before the first file.

    Returns:
        ``(held_out_cases, where_they_come_from)``.
    """
    info = load_dataset(config.dataset)
    _, held_out, source, _ = _held_out(config, info)
    _write_meta(config, Path(config.out), held_out, source)
    return held_out, source


def run_one(config: ExperimentConfig, index: int) -> RunResult | None:
    """Train and evaluate one run of the grid: the unit a scheduler runs (a job-array
    task, a ``--jobs`` worker, a submitit job).

    The run holds a lock of its own (``OUT/.locks/<run>``) from its start to its
    ``result.json``, so two shards, two workers or a rerun never train it twice: a run
    that has finished, or that another live process holds, is skipped.

    Returns:
        The run's result, or ``None`` when it was skipped.
    """
    run = grid(config)[index]
    if is_finished(config, run):
        return None
    lock_dir = Path(config.out) / ".locks" / run.name
    try:
        lock = RunLock(lock_dir, command=f"fdseg experiment run {run.name}").acquire()
    except RunLockedError as exc:
        logger.info(f"{run.name}: skipped, {exc}")
        return None
    try:
        if is_finished(config, run):  # it finished while we took the lock
            return None
        info = load_dataset(config.dataset)
        _, held_out, _, _ = _held_out(config, info)
        device = resolve_device(cast(TrainConfig, config.training).device)
        return _train_and_evaluate(config, run, held_out, device)
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            lock_dir.parent.rmdir()  # .locks/ goes with its last run


def run_experiment(
    config: ExperimentConfig,
    *,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    jobs: int = 1,
    report_only: bool = False,
) -> ExperimentReport:
    """Run (or resume) the experiment's unfinished runs, then write the report from
    every result that exists.

    Finished runs (those with ``result.json``) are skipped, so an interrupted
    experiment continues where it stopped, on this machine or another.

    Args:
        config: The experiment.
        progress: A progress bar over the runs.
        shard: ``(K, N)``: only the unfinished runs of shard K of N (:func:`parse_shard`).
        jobs: Runs at once, one process each, with the CPU threads (or the visible
            GPUs, one per run) divided among them.
        report_only: Train nothing; rebuild the report from the results there are.

    Returns:
        The report of every result there is, with the runs trained by this call.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise OptionError(f"{{jobs}} {jobs!r}: expected a positive number of processes", "jobs")
    info = load_dataset(config.dataset)
    _held_out(config, info)  # every check that can refuse it, before anything is written
    # shared: the shards and workers of this experiment side by side, each run under a
    # lock of its own; a train or predict that holds the folder refuses them all
    with RunLock(config.out, command="fdseg experiment", shared=True):
        prepare_experiment(config)
        trained = 0
        if not report_only:
            todo = [r for r in in_shard(grid(config), shard) if not is_finished(config, r)]
            trained = run_indices(config, [r.index for r in todo], jobs=jobs, progress=progress)
        report = experiment_report(config)
    template = cast(TrainConfig, config.training)
    if template.mlflow and trained:  # the report beside the runs, in their MLflow experiment
        out = Path(config.out)
        files = ["table.md", "table.csv", "summary.json", "dice_vs_size.png", "training_curves.png"]
        log_report(template.mlflow, out, [out / f for f in files])
    return replace(report, trained=trained)


def experiment_report(config: ExperimentConfig) -> ExperimentReport:
    """The report (tables, plots, seed-level statistics) of the results that exist;
    ``missing`` names the runs without one, and the Markdown table says how many."""
    out = Path(config.out)
    runs = grid(config)
    results, missing, curves = [], [], {}
    for run in runs:
        loaded = load_run(config.run_dir(run.train_size, run.method, run.seed))
        if loaded is None:
            missing.append(run.name)
            continue
        result, rows = loaded
        results.append(result)
        if rows:
            curves[(run.train_size, run.method, run.seed)] = rows
    return write_report(
        results,
        out,
        methods=[label for label, _, _ in config.methods],
        n_resamples=config.n_resamples,
        curves=curves,
        margin=config.margin,
        missing=missing,
    )


def run_indices(
    config: ExperimentConfig, indices: list[int], *, jobs: int = 1, progress: bool = True
) -> int:
    """Run these runs of the grid (:func:`run_one`), ``jobs`` at a time, one process
    each; the number trained."""
    if not indices:
        return 0
    bar = progress_bar(total=len(indices), progress=progress, desc="experiment", unit="run")
    done = 0
    try:
        if jobs == 1:
            train_logger = logging.getLogger("fdseg_core.train.loop")
            once = _OncePerMessage()
            train_logger.addFilter(once)
            try:
                for index in indices:
                    bar.set_postfix_str(grid(config)[index].name)
                    done += run_one(config, index) is not None
                    bar.update()
            finally:
                train_logger.removeFilter(once)
        else:
            for result in parallel_map(run_one, config, indices, jobs=jobs):
                done += result is not None
                bar.update()
    finally:
        bar.close()
    return done


def _train_and_evaluate(config, run: RunSpec, held_out, device) -> RunResult:
    """Train one run (resuming its ``last.pt``), evaluate it, write ``result.json``."""
    size, method, seed = run.train_size, run.method, run.seed
    run_dir = config.run_dir(size, method, seed)
    run_cfg = config.run_config(size, method, seed).replace(progress=False)
    trained = train(run_cfg, resume=(run_dir / "last.pt").is_file())
    t0 = time.perf_counter()
    cases = evaluate_run(run_dir / f"{config.checkpoint}.pt", held_out, device)
    test_time_s = time.perf_counter() - t0
    result = replace(
        _result(config, run_cfg, run, cases, trained, test_time_s),
        test_machine=machine_provenance(device),
    )
    result.save(run_dir)
    return result


def _write_meta(config: ExperimentConfig, out: Path, held_out: list, source: str) -> None:
    template = cast(TrainConfig, config.training)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "experiment.json",
        json.dumps(
            {
                "dataset": relative_to(config.dataset, out),
                "train_sizes": list(config.train_sizes),
                "fusions": list(config.fusions),
                "layouts": list(config.layouts),
                "methods": [label for label, _, _ in config.methods],
                "seeds": list(range(config.first_seed, config.first_seed + config.seeds)),
                "case_draw": config.case_draw,
                "margin": config.margin,
                "runs": [r.name for r in grid(config)],
                "checkpoint": config.checkpoint,
                "training": _template_options(template),
                "test_set": source,
                "test_cases": [c.case_id for c in held_out],
                "plan": config.plan.to_dict() if config.plan else None,
                **code_provenance(),
            },
            indent=1,
        )
        + "\n",
    )
    note = few_seeds_note(config.seeds)
    if note:
        logger.warning(note)


def relative_to(path: str | Path, folder: str | Path) -> str:
    """``path`` relative to ``folder`` (POSIX separators), so that committed results
    name no machine's absolute paths; an absolute path where there is no relative one
    (another drive on Windows).

    Symbolic links are kept as the user named them, not followed: a dataset reached
    through a link beside the experiment (``data -> /scratch/...``) is recorded as
    ``../data/...``, which holds on another machine that makes the same link, rather
    than as the path to where the link pointed on this one.
    """
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    except ValueError:
        return str(path)
    return Path(rel).as_posix()


def _template_options(template: TrainConfig) -> dict[str, Any]:
    """The template's fields that differ from ``TrainConfig``'s defaults (what the
    experiment was asked to train with), without the per-run and runtime fields."""
    default = TrainConfig(dataset=template.dataset, out=template.out).run_dict()
    per_run = {"dataset", "out", *PER_RUN_FIELDS}
    return {
        k: v for k, v in template.run_dict().items() if k not in per_run and default.get(k) != v
    }


def _result(
    config: ExperimentConfig,
    run_cfg: TrainConfig,
    run: RunSpec,
    cases: tuple[CaseDice, ...],
    trained: TrainResult,
    test_time_s: float,
) -> RunResult:
    """One run's result: what it scored and everything needed to read it without
    rerunning the code (paths relative to the experiment folder)."""
    steps = trained.steps_per_epoch
    return RunResult(
        run.train_size,
        run.method,
        run.seed,
        cases,
        fusion=run_cfg.fusion,
        layout=run_cfg.layout,
        checkpoint=config.checkpoint,
        best_epoch=trained.best_epoch,
        epochs_run=trained.epochs_run,
        stopped_early=trained.stopped_early,
        largest_size=max(config.train_sizes),
        inference_rule=trained.activation,
        train_cases=tuple(trained.train_ids),
        val_cases=tuple(trained.val_ids),
        steps_per_epoch=steps,
        best_step=trained.best_epoch * steps,
        stop_step=trained.epochs_run * steps,
        step_cap=run_cfg.epochs * steps,
        hit_step_cap=trained.epochs_run >= run_cfg.epochs and not trained.stopped_early,
        time_s=RunTimes(
            train=round(trained.train_time_s, 1),
            validation=round(trained.val_time_s, 1),
            test=round(test_time_s, 1),
        ),
        run_dir=relative_to(config.run_dir(run.train_size, run.method, run.seed), config.out),
        provenance=code_provenance(),
        machines=trained.machines,
    )
