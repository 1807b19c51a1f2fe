"""Cross-validation in one call: every fold, the pooled validation Dice, and the
post-processing decided from it, as nnU-Net does after its five folds.

``OUT/fold_k`` is an ordinary training run of fold ``k`` (``fdseg predict OUT/fold_k``
works), and ``OUT`` as a whole is an ensemble (``fdseg predict OUT`` averages the folds).
After training, each fold's best checkpoint scores its own validation cases once, in
memory, on each case's own grid (:func:`~fdseg_core.train.evaluation.evaluate_volumes`,
the function validation and experiments use); those predictions, pooled over the
folds, give the validation Dice of the whole cross-validation (``OUT/cv_summary.json``)
and decide, class by class, whether keeping only the largest connected component (per
class, or per class and hemisphere) raises the pooled Dice (``OUT/postprocessing.json``).
A line per fold says where the cross-validation stands.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdseg_core.atomic import atomic_write_text
from fdseg_core.data import (
    ALL_FOLD,
    class_names,
    load_dataset,
    num_classes,
    plan_folds,
)
from fdseg_core.errors import InputError
from fdseg_core.infer import keep_largest_per_class
from fdseg_core.metrics import dice_per_class
from fdseg_core.parallel import in_shard, parallel_map
from fdseg_core.runlock import RunLock
from fdseg_core.train.checkpoint import load_checkpoint
from fdseg_core.train.config import TrainConfig
from fdseg_core.train.evaluation import evaluate_checkpoint, nan_as_worst
from fdseg_core.train.loop import resolve_device, train

__all__ = [
    "POSTPROCESSING",
    "SUMMARY",
    "CrossValidationResult",
    "cross_validate",
    "decide_postprocessing",
    "load_postprocessing",
]

logger = logging.getLogger(__name__)

#: The pooled validation of a cross-validation.
SUMMARY = "cv_summary.json"
#: The post-processing it decided, per class (``fdseg predict OUT --keep-largest run``).
POSTPROCESSING = "postprocessing.json"
#: The modes tried per class, in this order (the first that is best wins a tie).
_MODES = ("none", "class", "hemisphere")


@dataclass(frozen=True)
class CrossValidationResult:
    """What :func:`cross_validate` gives back.

    Attributes:
        out: The cross-validation's folder.
        n_folds: Its folds.
        missing_folds: Folds not finished yet (other shards train them); while any is,
            nothing is pooled.
        n_cases: Validation cases pooled.
        pooled_dice: Pooled validation Dice per class name and ``mean``, before
            post-processing (``None`` while folds are missing).
        postprocessed_dice: The same after the post-processing decided.
        keep_largest_by_name: The decision per class name (``"none"``, ``"class"`` or
            ``"hemisphere"``).
    """

    out: str
    n_folds: int
    missing_folds: tuple[int, ...] = ()
    n_cases: int = 0
    pooled_dice: Mapping[str, float] | None = None
    postprocessed_dice: Mapping[str, float] = field(default_factory=dict)
    keep_largest_by_name: Mapping[str, str] = field(default_factory=dict)

    #: Cross-validation runs in one process: it always reports.
    is_main: bool = True

    @property
    def complete(self) -> bool:
        """Whether every fold has finished and the validation was pooled."""
        return not self.missing_folds

    @property
    def report(self) -> str:
        """A printable text: the pooled Dice per class before and after the
        post-processing, or the folds still to finish."""
        out = Path(self.out)
        if not self.complete:
            missing = ", ".join(f"fold_{k}" for k in self.missing_folds)
            return f"cross-validation in {out}: still to finish: {missing}"
        lines = [f"cross-validation of {self.n_folds} folds -> {out}"]
        for name, dice in (self.pooled_dice or {}).items():
            after = self.postprocessed_dice.get(name, float("nan"))
            mode = "" if name == "mean" else f" (keep largest: {self.keep_largest_by_name[name]})"
            lines.append(f"  pooled validation Dice {name:>20}: {dice:.4f} -> {after:.4f}{mode}")
        lines.append(
            "  (the largest component is kept where it raises the pooled Dice by more than "
            f"{MIN_POSTPROCESSING_GAIN})"
        )
        lines.append(f"  written: {out / SUMMARY}, {out / POSTPROCESSING}")
        return "\n".join(lines)


def cross_validate(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    jobs: int = 1,
) -> CrossValidationResult:
    """Train every fold of ``config``'s split into ``config.out/fold_k``, then pool the
    validation predictions and decide the post-processing.

    Folds resume one by one: with ``resume``, a finished fold (its last epoch done, or
    stopped early) is kept, an unfinished one continues from its ``last.pt`` and a
    missing one starts. ``config.fold`` is ignored (every fold runs). Each fold holds
    its own folder's lock while it trains, so shards of the folds (job-array tasks) and
    parallel workers run side by side; the pooled validation and the post-processing
    decision are made once every fold has finished, by whichever call finds them all.

    Args:
        config: The runs' configuration (``out`` is the cross-validation's folder).
        resume: Continue a cross-validation in ``config.out``.
        progress: Progress bars.
        shard: ``(K, N)``: train only the folds ``k`` with ``k % N == K - 1``.
        jobs: Folds at once on this machine, one process each.

    Returns:
        The :class:`CrossValidationResult`. ``cv_summary.json`` holds the same and each
        fold's best validation Dice during training, its cases and the Dice of every
        post-processing mode.

    Raises:
        ValueError: A dataset with a single training case (no folds to validate on).
        FileExistsError: A fold this call would train holds a run and ``resume`` is
            false.
        RunLockedError: Another live fdseg process writes into a fold's folder.
    """
    out = Path(config.out)
    info = load_dataset(config.dataset)
    plan = plan_folds(len(info.training), config.n_folds, 0)
    if plan.fold == ALL_FOLD:
        raise InputError(
            f"{config.dataset}: cross-validation needs at least 2 training cases, the dataset has 1"
        )
    mine = in_shard(list(range(plan.n_folds)), shard)
    if not resume and shard is None and any((out / f"fold_{k}" / "last.pt").exists() for k in mine):
        raise FileExistsError(
            f"{out} already holds a cross-validation (fold_k/last.pt); resume it or choose "
            "another output folder"
        )
    if plan.note:
        logger.info(plan.note)
    args = (config, plan.n_folds, resume or shard is not None, progress)
    if jobs > 1 and len(mine) > 1:
        list(parallel_map(_fold_job, args, mine, jobs=jobs))
    else:
        for k in mine:
            _fold_job(args, k)
    folds = [_fold_record(out / f"fold_{k}", k) for k in range(plan.n_folds)]
    missing = [k for k, fold in enumerate(folds) if fold is None]
    if missing:
        logger.info(
            f"cross-validation: {plan.n_folds - len(missing)} of {plan.n_folds} folds done; "
            "the pooled validation is made once every fold has finished"
        )
        return CrossValidationResult(str(out), plan.n_folds, missing_folds=tuple(missing))
    with RunLock(out, command="fdseg train --folds-all"):
        device = resolve_device(config.device)
        by_id = {c.case_id: c for c in info.training}
        pairs = []
        for k, fold in enumerate(folds):
            pairs += _validate_fold(out / f"fold_{k}", [by_id[i] for i in fold["val"]], device)
        summary = _summarise(pairs, info.labels, plan.n_folds, folds)
        atomic_write_text(out / SUMMARY, json.dumps(summary, indent=1) + "\n")
        decision = {
            "keep_largest": summary["keep_largest"],
            "rule": "per class, the mode of largest pooled validation Dice, when it beats "
            f"none by more than {MIN_POSTPROCESSING_GAIN} (else none)",
        }
        atomic_write_text(out / POSTPROCESSING, json.dumps(decision, indent=1) + "\n")
    return CrossValidationResult(
        out=str(out),
        n_folds=plan.n_folds,
        n_cases=summary["n_cases"],
        pooled_dice=summary["pooled_dice"],
        postprocessed_dice=summary["postprocessed_dice"],
        keep_largest_by_name=summary["keep_largest_by_name"],
    )


def _fold_job(args: tuple, k: int) -> None:
    """Train (or resume, or keep) fold ``k``: the unit of ``jobs`` and shards."""
    config, n_folds, resume, progress = args
    out = Path(config.out)
    fold_config = config.replace(fold=k, n_folds=n_folds, out=str(out / f"fold_{k}"))
    logger.info(f"cross-validation: fold {k + 1} of {n_folds} -> {fold_config.out}")
    fold = _train_fold(fold_config, resume=resume, progress=progress)
    logger.info(
        f"cross-validation: fold {k + 1} of {n_folds} done, best mean Dice "
        f"{fold['best_dice']:.4f} at epoch {fold['best_epoch']}"
    )


def _fold_record(fold_dir: Path, k: int) -> dict[str, Any] | None:
    """A finished fold's best Dice and validation cases; ``None`` while it is not."""
    last = fold_dir / "last.pt"
    if not last.is_file():
        return None
    ckpt = load_checkpoint(last)
    if not _finished(ckpt):
        return None
    splits = json.loads((fold_dir / "splits_final.json").read_text())
    return {
        "best_dice": float(ckpt["best_dice"]),
        "best_epoch": int(ckpt["best_epoch"]),
        "val": list(splits[k]["val"]),
    }


def _finished(ckpt: dict[str, Any], epochs: int | None = None) -> bool:
    """Whether a fold's ``last.pt`` ends its run: stopped early, or its epochs done (of
    ``epochs``, else of its own configuration) with no epoch left half-done."""
    total = int(ckpt["config"]["epochs"]) if epochs is None else epochs
    done = bool(ckpt.get("stopped_early")) or int(ckpt["epoch"]) >= total
    return done and not ckpt.get("epoch_progress")


def _train_fold(config: TrainConfig, *, resume: bool, progress: bool) -> dict[str, Any]:
    """Train (or resume, or keep) one fold; its best Dice and validation cases."""
    last = Path(config.out) / "last.pt"
    finished = False
    if resume and last.is_file():
        ckpt = load_checkpoint(last)
        finished = _finished(ckpt, config.epochs)
    if finished:
        logger.info(f"{config.out}: finished earlier, kept")
        summary = {"best_dice": float(ckpt["best_dice"]), "best_epoch": int(ckpt["best_epoch"])}
    else:
        result = train(config.replace(progress=progress), resume=resume and last.is_file())
        summary = {"best_dice": float(result.best_dice), "best_epoch": result.best_epoch}
    splits = json.loads((Path(config.out) / "splits_final.json").read_text())
    return {**summary, "val": list(splits[int(config.fold)]["val"])}


def _validate_fold(fold_dir: Path, cases: list, device: torch.device) -> list[tuple]:
    """Score a fold's validation cases with its best checkpoint, in memory and on each
    case's own grid: ``(case, prediction, reference, affine)`` per case."""
    scores, _ = evaluate_checkpoint(fold_dir / "best.pt", cases, device, keep_labels=True)
    return [(s.case_id, s.labels, s.reference, s.affine) for s in scores]


def load_postprocessing(run_dir: str | Path) -> dict[int, str]:
    """The keep-largest mode per class value that a cross-validation in ``run_dir``
    decided (``run_dir/postprocessing.json``).

    Raises:
        FileNotFoundError: ``run_dir`` holds no decision (it is written by
            :func:`cross_validate`).
    """
    path = Path(run_dir) / POSTPROCESSING
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: a cross-validation decides it")
    decision = json.loads(path.read_text())
    return {int(v): mode for v, mode in decision["keep_largest"].items()}


#: The smallest gain in pooled validation Dice that makes a class keep only its largest
#: component (0.001: below it, a change of a few voxels is not worth a post-processing).
MIN_POSTPROCESSING_GAIN = 0.001


def decide_postprocessing(
    pairs: list[tuple], labels: dict[str, int], *, min_gain: float = MIN_POSTPROCESSING_GAIN
) -> tuple[dict[int, str], dict[str, dict[str, float]]]:
    """Per class, the keep-largest mode of largest mean Dice over the pooled validation
    predictions, when it beats ``"none"`` by more than ``min_gain`` (else ``"none"``;
    ties go to ``"none"``, then ``"class"``).

    Args:
        pairs: ``(case, prediction, reference, affine)`` per validation case.
        labels: Class name -> value.

    Returns:
        ``(modes, dice)``: the mode per class value, and per class name the mean Dice of
        each mode.
    """
    modes: dict[int, str] = {}
    table: dict[str, dict[str, float]] = {}
    n_classes = num_classes(labels)
    for name, value in sorted(labels.items(), key=lambda kv: kv[1]):
        if value == 0:
            continue
        scores = {}
        for mode in _MODES:
            values = []
            for _, pred, ref, affine in pairs:
                cleaned = keep_largest_per_class(pred, {value: mode}, affine=affine)
                dice = dice_per_class(torch.as_tensor(cleaned), torch.as_tensor(ref), n_classes)
                d = float(dice[value])
                if not math.isnan(d):
                    values.append(d)
            scores[mode] = float(np.mean(values)) if values else float("nan")
        best = max(_MODES, key=lambda m: (nan_as_worst(scores[m]), -_MODES.index(m)))
        gain = nan_as_worst(scores[best]) - nan_as_worst(scores["none"])
        modes[value] = best if gain > min_gain else "none"
        table[name] = scores
    return modes, table


def _summarise(pairs, labels, n_folds, folds) -> dict[str, Any]:
    modes, table = decide_postprocessing(pairs, labels)
    names = class_names(labels)
    pooled = {name: scores["none"] for name, scores in table.items()}
    after = {names[v]: table[names[v]][mode] for v, mode in modes.items()}
    pooled["mean"] = float(np.nanmean(list(pooled.values()))) if pooled else float("nan")
    after["mean"] = float(np.nanmean([after[n] for n in table])) if table else float("nan")
    return {
        "n_folds": n_folds,
        "n_cases": len(pairs),
        "pooled_dice": pooled,
        "postprocessed_dice": after,
        "keep_largest": {str(v): m for v, m in modes.items()},
        "keep_largest_by_name": {names[v]: m for v, m in modes.items()},
        "dice_by_mode": table,
        "folds": folds,
    }
