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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdseg_core.atomic import atomic_write_text
from fdseg_core.choices import DEFAULT_OVERLAP, DEFAULT_WINDOW_BATCH
from fdseg_core.data import (
    ALL_FOLD,
    Preprocessor,
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
from fdseg_core.train.checkpoint import load_checkpoint, load_model
from fdseg_core.train.config import TrainConfig
from fdseg_core.train.evaluation import evaluate_volumes, nan_as_worst
from fdseg_core.train.loop import resolve_device, train

__all__ = [
    "POSTPROCESSING",
    "SUMMARY",
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


def cross_validate(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
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
        The summary written to ``cv_summary.json``: ``n_folds``, ``pooled_dice`` (per
        class and ``mean``, before post-processing), ``postprocessed_dice`` and
        ``keep_largest`` (the decision), ``folds`` (each fold's best validation Dice
        during training and its cases); or, while folds are missing, ``n_folds``,
        ``missing_folds`` and ``pooled_dice`` ``None``.

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
        return {"n_folds": plan.n_folds, "missing_folds": missing, "pooled_dice": None}
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
    return summary


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
    done = bool(ckpt.get("stopped_early")) or int(ckpt["epoch"]) >= int(ckpt["config"]["epochs"])
    if not done or ckpt.get("epoch_progress"):
        return None
    splits = json.loads((fold_dir / "splits_final.json").read_text())
    return {
        "best_dice": float(ckpt["best_dice"]),
        "best_epoch": int(ckpt["best_epoch"]),
        "val": list(splits[k]["val"]),
    }


def _train_fold(config: TrainConfig, *, resume: bool, progress: bool) -> dict[str, Any]:
    """Train (or resume, or keep) one fold; its best Dice and validation cases."""
    last = Path(config.out) / "last.pt"
    finished = False
    if resume and last.is_file():
        ckpt = load_checkpoint(last)
        finished = bool(ckpt.get("stopped_early")) or int(ckpt["epoch"]) >= config.epochs
    if finished:
        logger.info(f"{config.out}: finished earlier, kept")
        summary = {"best_dice": float(ckpt["best_dice"]), "best_epoch": int(ckpt["best_epoch"])}
    else:
        result = train(config.replace(progress=progress), resume=resume and last.is_file())
        summary = {"best_dice": float(result["best_dice"]), "best_epoch": result["best_epoch"]}
    splits = json.loads((Path(config.out) / "splits_final.json").read_text())
    return {**summary, "val": list(splits[int(config.fold)]["val"])}


def _validate_fold(fold_dir: Path, cases: list, device: torch.device) -> list[tuple]:
    """Score a fold's validation cases with its best checkpoint, in memory and on each
    case's own grid: ``(case, prediction, reference, affine)`` per case."""
    model, meta = load_model(fold_dir / "best.pt", map_location=device)
    model.eval()
    prep = Preprocessor.from_meta(meta)
    scores = evaluate_volumes(
        model,
        [prep(case) for case in cases],
        num_classes=meta["num_classes"],
        patch_size=meta["patch_size"],
        overlap=float(meta["config"].get("overlap", DEFAULT_OVERLAP)),
        device=device,
        activation=meta["activation"],
        target_spacing=meta.get("target_spacing"),
        case_grid=True,
        keep_labels=True,
        batch_size=int(meta["config"].get("batch_size", DEFAULT_WINDOW_BATCH)),
    )
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
