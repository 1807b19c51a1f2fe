"""The job engine: which defaults apply, planning, and resuming from the run itself.

Every entry point that trains (``fdseg train``, ``fdseg train --folds-all``,
``torchrun ... fdseg train``, ``fdseg experiment`` and the Python API) turns what the
user asked for into a configuration here, so the same options do the same thing
wherever they are given:

1. **Resume** (``resume=True``): the configuration is the run's own ``config.json``.
   Nothing is planned again and no recipe is applied again. Only the fields the user
   gave are compared with it: runtime fields and ``epochs`` may change, a changed
   run-defining field is refused, naming it.
2. **Otherwise**, by the one precedence rule of
   :func:`~fdseg_core.train.recipes.resolve_fields`: what the user gave, then the
   recipe's value, then the job's defaults, which are

   * the built-in phantom's own sizes (:data:`~fdseg_core.jobs.default.PHANTOM_TRAINING`)
     when no dataset is given;
   * a plan of target spacing, patch and batch size made from the dataset's
     fingerprint (:func:`~fdseg_core.planning.plan_run`) when the user gave no size
     field and planning is on; ``plans.json`` is written beside the run once it has
     started, and read back when an experiment continues. A recipe's sizes win over
     the plan's (the default recipe sets the patch and batch size it was measured
     with, ``"paper"`` whole volumes), and a note says which;
   * :class:`~fdseg_core.train.TrainConfig`'s defaults for the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fdseg_core.choices import DEFAULT_MEMORY_GB
from fdseg_core.errors import InputError, OptionError
from fdseg_core.jobs.default import PHANTOM_TRAINING, ensure_default_dataset
from fdseg_core.train.config import RUNTIME_FIELDS, TrainConfig, differing_run_fields, option_spec
from fdseg_core.train.recipes import resolve_fields

if TYPE_CHECKING:  # pragma: no cover
    from fdseg_core.crossval import CrossValidationResult
    from fdseg_core.planning import Fingerprint, Plan
    from fdseg_core.train.results import TrainResult

__all__ = [
    "PLANS",
    "SIZE_FIELDS",
    "TrainingJob",
    "default_out",
    "resolve_planned",
    "resume_config",
    "run_training_job",
    "training_job",
]

#: The fields that decide sizes: giving one turns planning off.
SIZE_FIELDS = ("patch_size", "target_spacing")
#: The plan of a run (or of an experiment's runs), beside it.
PLANS = "plans.json"
#: What a resumed run may change: how it executes here, and how long it runs.
_MAY_CHANGE = frozenset(RUNTIME_FIELDS) | {"epochs"}
#: What a plan sets.
_PLANNED = ("target_spacing", "patch_size", "batch_size")


@dataclass(frozen=True)
class TrainingJob:
    """A training run, resolved: its configuration and where its values came from.

    Attributes:
        config: The configuration to train.
        applied: The values the recipe set (to print; empty on resume).
        defaults: Where the defaults came from: ``"phantom"`` (the built-in job),
            ``"plan"`` (planned now), ``"plans.json"`` (read back), ``"run"`` (resumed
            from the run's ``config.json``) or ``"config"`` (``TrainConfig``'s).
        notes: Lines that say why (the plan's reasons, the resume source), in order.
        plan: The plan made now and the dataset's fingerprint it was made from, written
            to ``plans.json`` once the run starts (``None`` when nothing was planned
            now).
    """

    config: TrainConfig
    applied: dict[str, Any] = field(default_factory=dict)
    defaults: str = "config"
    notes: tuple[str, ...] = ()
    plan: tuple[Plan, Fingerprint] | None = None

    def save_plan(self, folder: str | Path | None = None) -> Path | None:
        """Write the plan made now to ``folder/plans.json`` (default: the run's folder);
        nothing when nothing was planned now."""
        if self.plan is None:
            return None
        from fdseg_core.planning import save_plan  # lazy: planning imports torch

        plan, fp = self.plan
        return save_plan(plan, fp, Path(folder or self.config.out) / PLANS)


def default_out(dataset: str | Path, fields: Mapping[str, Any]) -> Path:
    """``runs/<dataset>-<backbone>-<fusion>``: where a run goes without ``out``."""
    name = {k: fields.get(k, option_spec(k)["default"]) for k in ("backbone", "fusion")}
    return Path("runs") / f"{Path(dataset).name}-{name['backbone']}-{name['fusion']}"


def training_job(
    dataset: str | Path | None,
    out: str | Path | None = None,
    *,
    given: Mapping[str, Any] | None = None,
    resume: bool = False,
    planning: bool = True,
    memory_gb: float = DEFAULT_MEMORY_GB,
    progress: bool = False,
) -> TrainingJob:
    """Resolve a training run from what the user gave.

    Args:
        dataset: The dataset root; ``None``: the built-in phantom (generated once into
            the cache), or, on resume, the run's own dataset.
        out: The run's folder (default: :func:`default_out`; required on resume).
        given: The config fields the user set (on the command line: only the options
            typed), ``recipe`` included. Nothing else is taken as the user's choice.
        resume: Continue the run in ``out`` from its own ``config.json``.
        planning: Plan sizes from the dataset when ``given`` has no size field.
        memory_gb: The memory budget of one training step, for the plan.
        progress: A progress bar while the dataset is fingerprinted or generated.

    Returns:
        The resolved :class:`TrainingJob`.

    Raises:
        OptionError: On resume, a run-defining field that differs from the run's.
        FileNotFoundError: On resume, a folder that holds no run.
        ValueError: A bad value (named), a dataset folder that does not exist.
    """
    given = dict(given or {})
    if resume:
        if out is None:
            raise OptionError(
                "{resume} needs {out}: the folder of the run to continue", "resume", "out"
            )
        config, notes = resume_config(out, given, dataset=dataset)
        return TrainingJob(config=config, defaults="run", notes=notes)
    recipe = given.pop("recipe", "default")
    if dataset is None:
        dataset = ensure_default_dataset(progress=progress)
        fields, applied = resolve_fields(given, recipe=recipe, defaults=PHANTOM_TRAINING)
        notes = (f"no dataset given: using the built-in QSM phantom at {dataset}",)
        out = out if out is not None else default_out(dataset, fields)
        config = TrainConfig(dataset=str(dataset), out=str(out), **fields)
        return TrainingJob(config=config, applied=applied, defaults="phantom", notes=notes)
    if not Path(dataset).is_dir():
        raise FileNotFoundError(f"dataset folder {dataset} does not exist")
    fields, applied = resolve_fields(given, recipe=recipe)
    out = Path(out) if out is not None else default_out(dataset, fields)
    _check_before_planning(dataset, fields)
    if not planning or any(k in given for k in SIZE_FIELDS):
        config = TrainConfig(dataset=str(dataset), out=str(out), **fields)
        return TrainingJob(config=config, applied=applied)
    planned, source, notes, made, median = _plan(dataset, out, fields, memory_gb, progress)
    fields, applied, over = resolve_planned(given, recipe, planned, median)
    if made is not None and applied.get("patch_size", planned.get("patch_size")) != planned.get(
        "patch_size"
    ):  # the plan's warnings are about its patch, which the recipe replaced: not said
        notes = tuple(f"plan: {line}" for line in made[0].reasons)
    notes += over
    config = TrainConfig(dataset=str(dataset), out=str(out), **fields)
    return TrainingJob(config=config, applied=applied, defaults=source, notes=notes, plan=made)


def _check_before_planning(dataset: str | Path, fields: Mapping[str, Any]) -> None:
    """The checks that can refuse a run, in the order a user reads them (the dataset's
    layout and every case, the backbone, the folds), before a plan is made or printed."""
    from fdseg_core.data import (  # lazy: the data package, torch
        load_dataset,
        plan_folds,
        require_clean_dataset,
    )
    from fdseg_core.plugins import get_backbone  # lazy: the plugin manager, on use

    info = load_dataset(dataset)
    require_clean_dataset(dataset)
    get_backbone(fields.get("backbone") or option_spec("backbone")["default"])
    plan_folds(
        len(info.training),
        fields.get("n_folds"),
        fields.get("fold", option_spec("fold")["default"]),
    )


def _plan(dataset, out: Path, fields: dict, memory_gb: float, progress: bool):
    """The planned fields: read back from ``out/plans.json`` when an earlier start of
    this job wrote one (an experiment that continues), else planned now.

    Returns:
        ``(planned, source, notes, made, median_shape)``: ``made`` is ``(plan,
        fingerprint)`` when planned now, ``median_shape`` the median resampled case
        (``None`` when a saved plan does not record it).
    """
    path = out / PLANS
    if path.is_file():
        saved = json.loads(path.read_text())
        planned = {
            k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in _PLANNED
        }
        median = saved.get("median_shape")
        median = tuple(median) if median else None
        return planned, PLANS, (f"plan: read from {path}",), None, median
    from fdseg_core.planning import plan_run  # lazy: planning builds the network (torch)

    probe = TrainConfig(dataset=str(dataset), out=str(out), **fields)
    plan, fp = plan_run(probe, memory_gb=memory_gb, progress=progress)
    notes = tuple(f"plan: {line}" for line in plan.report().splitlines())
    return plan.fields(), "plan", notes, (plan, fp), tuple(plan.median_shape)


def resolve_planned(
    given: Mapping[str, Any], recipe: str, planned: Mapping[str, Any], median: Any
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    """The fields a planned run trains: the user's, then the recipe's, then the plan's
    (:func:`~fdseg_core.train.recipes.resolve_fields`), with lines that say which
    planned sizes the recipe replaced and whether its patch is larger than the median
    case along an axis.

    Args:
        given: The fields the user set (no size field: those turn planning off).
        recipe: The recipe's name.
        planned: The plan's fields (:meth:`fdseg_core.planning.Plan.fields`).
        median: The median resampled case shape ``(X, Y, Z)`` (``None``: unknown).

    Returns:
        ``(fields, applied, notes)``: the merged fields, the recipe values applied, and
        the lines, each starting with ``plan:`` (none when the recipe set no size).
    """
    fields, applied = resolve_fields(given, recipe=recipe, defaults=planned)
    return fields, applied, _recipe_over_plan(recipe, applied, planned, median)


def _recipe_over_plan(
    recipe: str, applied: Mapping[str, Any], planned: Mapping[str, Any], median: Any
) -> tuple[str, ...]:
    """The lines of :func:`resolve_planned`."""
    over = [k for k in _PLANNED if k in applied and applied[k] != planned.get(k)]
    if not over:
        return ()
    said = ", ".join(
        f"{k.replace('_', ' ')} {_size(applied[k])} (planned: {_size(planned.get(k))})"
        for k in over
    )
    notes = [
        f"plan: the {recipe!r} recipe sets {said}; a recipe's sizes win over the plan's "
        "(docs/planning.md); set the sizes yourself to train others"
    ]
    patch = applied.get("patch_size")
    if "patch_size" in over and not isinstance(patch, str) and median:
        axes = [a for a, (p, m) in enumerate(zip(patch, median, strict=True)) if p > m]
        if axes:
            notes.append(
                f"plan: warning: the patch {_size(patch)} is larger than the median case "
                f"({_size([round(m) for m in median])}) along axis "
                f"{', '.join(map(str, axes))}: cases are padded to it; set a smaller patch "
                "size to avoid it"
            )
    return tuple(notes)


def _size(value: Any) -> str:
    """A size as the CLI takes it: ``48 x 48 x 32``, ``2``, ``full``."""
    if isinstance(value, list | tuple):
        return " x ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def _saved_config_path(out: Path) -> Path | None:
    """The run's own ``config.json``: ``out/config.json``, or a cross-validation's
    ``out/fold_0/config.json``."""
    for path in (out / "config.json", out / "fold_0" / "config.json"):
        if path.is_file():
            return path
    return None


def resume_config(
    out: str | Path, given: Mapping[str, Any], *, dataset: str | Path | None = None
) -> tuple[TrainConfig, tuple[str, ...]]:
    """The configuration of the run in ``out``, with the changes a resume may make.

    Nothing that identifies a run depends on where it sits: ``out`` may be spelled in
    any way (relative, absolute, through a link) and the folder may have been moved or
    copied. Without ``dataset``, the run's dataset is its recorded path, relative to this
    working directory, or else where it was when the run started (its checkpoint
    records it); a dataset given again must hold the run's cases.

    Args:
        out: The run's folder (or a cross-validation's, which holds ``fold_k/``).
        given: The fields the user set for this resume. Runtime fields and ``epochs``
            replace the run's; any other field must equal the run's value
            (:func:`~fdseg_core.train.config.differing_run_fields`).
        dataset: The dataset given again (``None``: the run's own).

    Returns:
        ``(config, notes)``: the configuration (``out`` is the folder given, ``dataset``
        the one found) and the lines that say where they came from.

    Raises:
        FileNotFoundError: ``out`` holds no run (no ``config.json``), or its dataset is
            found nowhere.
        OptionError: A run-defining field that differs from the run's, naming each, or
            a dataset that does not hold the run's cases.
    """
    out = Path(out)
    path = _saved_config_path(out)
    if path is None:
        raise FileNotFoundError(f"{out} holds no run to resume (no config.json)")
    try:
        saved = TrainConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a configuration fdseg can resume ({exc})") from exc
    fold = {"fold": 0} if path.parent != out else {}  # a cross-validation: every fold
    found, note = _resume_dataset(out, path.parent, saved.dataset, dataset)
    saved = saved.replace(out=str(out), dataset=found, **fold)
    wanted = saved.replace(**given) if given else saved
    differ = differing_run_fields(saved.to_dict(), wanted.to_dict())
    if differ:
        named = ", ".join("{" + k + "}" for k in differ)
        raise OptionError(
            f"{{resume}}: the run in {out} was trained with other values of {named}; "
            "resume without them (the run's own are used), or start a new run in another "
            "folder (only runtime options and {epochs} may change)",
            "resume",
            *differ,
            "epochs",
        )
    changes = {k: v for k, v in given.items() if k in _MAY_CHANGE}
    notes = (f"resuming from {path} (the run's own configuration)",) + ((note,) if note else ())
    return saved.replace(**changes), notes


def _resume_dataset(
    out: Path, run_dir: Path, recorded: str, given: str | Path | None
) -> tuple[str, str | None]:
    """The dataset a resumed run reads, and a line when it is not the recorded path."""
    from fdseg_core.data import load_dataset  # lazy: the data package imports torch

    run_cases = _run_case_ids(run_dir)
    if given is not None:
        why = None
        if run_cases:  # the same cases, wherever the dataset lies now
            missing = sorted(run_cases - {c.case_id for c in load_dataset(given).training})
            if missing:
                why = f"{given} does not hold its cases ({len(missing)} missing, e.g. {missing[0]})"
        elif Path(given).resolve() != Path(recorded).resolve():  # no split yet: the folder
            why = f"not on {given}"
        if why:
            raise OptionError(
                f"{{resume}}: the run in {out} was trained on {recorded}, {why}; give that "
                "dataset, or none to use the run's own",
                "resume",
            )
        return str(given), None
    if (Path(recorded) / "dataset.json").is_file():
        return recorded, None
    started = _recorded_dataset_root(run_dir)
    if started is not None and (Path(started) / "dataset.json").is_file():
        return started, f"the run's dataset {recorded} is not here: using {started}"
    where = f" or {started}" if started and started != recorded else ""
    raise FileNotFoundError(
        f"the run in {out} was trained on {recorded}, which is not at {recorded}{where} from "
        f"here; give the dataset again: fdseg train DATASET --out {out} --resume"
    )


def _run_case_ids(run_dir: Path) -> set[str]:
    """The case ids of a run's split (``splits_final.json``), empty without one."""
    split = run_dir / "splits_final.json"
    if not split.is_file():
        return set()
    folds = json.loads(split.read_text())
    return {c for fold in folds for part in ("train", "val") for c in fold.get(part, [])}


def _recorded_dataset_root(run_dir: Path) -> str | None:
    """Where the dataset was when the run started (its ``last.pt`` records it)."""
    from fdseg_core.train.checkpoint import load_checkpoint  # lazy: torch

    last = run_dir / "last.pt"
    if not last.is_file():
        return None
    try:
        return load_checkpoint(last, map_location="cpu").get("data", {}).get("dataset_root")
    except (OSError, ValueError):
        return None


def run_training_job(
    job: TrainingJob,
    *,
    resume: bool = False,
    folds_all: bool = False,
    shard: tuple[int, int] | None = None,
    jobs: int = 1,
    memory_gb: float | None = None,
) -> TrainResult | CrossValidationResult:
    """Train the job (every fold with ``folds_all``), and record a plan made now in
    ``plans.json`` once the run has started (not for a run that was refused).

    ``memory_gb``: a budget one training step must fit in (checked on the network before
    anything is written), beside the device's free memory, which is always checked.

    ``shard`` (the folds of shard K of N) and ``jobs`` (folds at once, one process each)
    apply to ``folds_all``; the pooled validation is made once every fold exists.

    Returns:
        The :class:`~fdseg_core.train.results.TrainResult` of
        :func:`fdseg_core.train.train` or, with ``folds_all``, the
        :class:`~fdseg_core.crossval.CrossValidationResult`.
    """
    from fdseg_core.train import train  # lazy: the training loop imports torch

    out = Path(job.config.out)
    try:
        if folds_all:
            from fdseg_core.crossval import cross_validate  # lazy: torch, on use

            return cross_validate(
                job.config, resume=resume, progress=job.config.progress, shard=shard, jobs=jobs
            )
        if shard is not None or jobs != 1:
            raise OptionError(
                "{shard} and {jobs} split the folds of a cross-validation: give {folds_all}",
                "shard",
                "jobs",
                "folds_all",
            )
        return train(job.config, resume=resume, memory_gb=memory_gb)
    finally:
        if _saved_config_path(out) is not None:
            job.save_plan()
