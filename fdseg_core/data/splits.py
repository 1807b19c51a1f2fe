"""Deterministic k-fold splits (nnU-Net's ``splits_final.json`` format) and subsets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdseg_core.atomic import atomic_write_text
from fdseg_core.choices import CASE_DRAWS
from fdseg_core.errors import InputError, OptionError

__all__ = [
    "ALL_FOLD",
    "DEFAULT_FOLDS",
    "FoldPlan",
    "fold_cases",
    "make_splits",
    "plan_folds",
    "save_splits",
    "load_splits",
    "select_subset",
]

#: Folds of the cross-validation split when the user does not choose (nnU-Net's 5).
DEFAULT_FOLDS = 5
#: nnU-Net's name of the fold that trains (and validates) on every case.
ALL_FOLD = "all"


@dataclass(frozen=True)
class FoldPlan:
    """How a run splits its training cases.

    Attributes:
        n_folds: Folds of the split (``None`` for the ``"all"`` fold).
        fold: Validation fold index, or ``"all"`` (train and validate on every case).
        note: One line for the user when the plan differs from what was asked
            (folds adapted to a small dataset, or the ``"all"`` fold), else ``None``.
        optimistic: The validation cases are training cases (the ``"all"`` fold), so
            the validation Dice overestimates performance on unseen cases.
    """

    n_folds: int | None
    fold: int | str
    note: str | None = None
    optimistic: bool = False


def plan_folds(
    n_cases: int,
    n_folds: int | None = None,
    fold: int | str = 0,
    *,
    default: int = DEFAULT_FOLDS,
) -> FoldPlan:
    """Decide the cross-validation split of ``n_cases`` training cases.

    * ``n_folds=None`` (not chosen): ``default`` folds, or as many folds as there are
      cases when there are fewer (at least 2); with a single case, the ``"all"`` fold
      (train and validate on it, as nnU-Net's ``all``), flagged as optimistic.
    * An explicit ``n_folds`` that the data cannot honour is an error naming ``n_folds``
      (``--folds`` on the command line) and the largest value that works.
    * ``fold="all"``: every case trains and validates, whatever ``n_folds``.

    Args:
        n_cases: Number of labelled training cases.
        n_folds: Folds asked for (``None``: adapt to the data).
        fold: Validation fold index, or ``"all"``.
        default: Folds used when ``n_folds`` is ``None`` and the data allow it.

    Returns:
        The :class:`FoldPlan`.

    Raises:
        OptionError: ``n_folds`` larger than ``n_cases`` (or below 2), or ``fold``
            outside ``[0, n_folds)`` (a :class:`ValueError` naming the option).
    """
    if n_cases < 1:
        raise InputError("the dataset holds no training case")
    if fold == ALL_FOLD:
        note = (
            f"fold 'all': training and validating on all {n_cases} training case(s); "
            "the validation Dice is optimistic (it is measured on training data)"
        )
        return FoldPlan(None, ALL_FOLD, note, optimistic=True)
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 0:
        raise OptionError(f"{{fold}} must be a fold index >= 0 or 'all', got {fold!r}", "fold")
    note = None
    if n_folds is None:
        if n_cases == 1:
            if fold != 0:
                raise OptionError(
                    f"{{fold}} {fold}: the dataset has 1 training case, so there is no fold "
                    f"{fold}; leave {{fold}} out (or use {{fold}} all)",
                    "fold",
                )
            note = (
                "the dataset has 1 training case: training and validating on it "
                "(nnU-Net's 'all' fold); the validation Dice is optimistic"
            )
            return FoldPlan(None, ALL_FOLD, note, optimistic=True)
        n_folds = min(default, n_cases)
        if n_folds < default:
            note = (
                f"the dataset has {n_cases} training cases: using {n_folds}-fold "
                f"cross-validation (one case per validation fold) instead of {default}"
            )
    elif isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise OptionError(f"{{n_folds}} must be an integer >= 2, got {n_folds!r}", "n_folds")
    elif n_folds > n_cases:
        largest = (
            f"use {{n_folds}} {n_cases} or fewer, or leave {{n_folds}} out"
            if n_cases >= 2
            else "leave {n_folds} out to train and validate on it (the 'all' fold)"
        )
        raise OptionError(
            f"{{n_folds}} {n_folds} needs at least {n_folds} training cases but the dataset "
            f"has {n_cases}: {largest}",
            "n_folds",
        )
    if fold >= n_folds:
        raise OptionError(
            f"{{fold}} {fold} does not exist with {n_folds} folds: use {{fold}} 0 to {n_folds - 1}",
            "fold",
        )
    return FoldPlan(n_folds, fold, note)


def make_splits(case_ids: Sequence[str], *, n_folds: int = 5, seed: int = 0) -> list[dict]:
    """``[{"train": [...], "val": [...]}, ...]``: each case is validation in exactly one fold.

    The order depends only on the sorted case ids and the seed.

    Raises:
        ValueError: Fewer cases than folds, or duplicate case ids.
    """
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        raise InputError("case ids must be unique")
    if n_folds < 2 or len(ids) < n_folds:
        raise InputError(
            f"cannot make {n_folds} folds from {len(ids)} cases (need n_folds >= 2 "
            "and at least one case per fold)"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    folds = np.array_split(order, n_folds)
    out = []
    for k in range(n_folds):
        val = sorted(ids[i] for i in folds[k])
        train = sorted(ids[i] for j, f in enumerate(folds) if j != k for i in f)
        out.append({"train": train, "val": val})
    return out


def save_splits(splits: list[dict], path: str | Path) -> None:
    """Write splits as JSON atomically."""
    atomic_write_text(Path(path), json.dumps(splits, indent=1) + "\n")


def load_splits(path: str | Path) -> list[dict]:
    """Read a ``splits_final.json``; a malformed file is a ``ValueError`` naming it."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} could not be read as a splits file: {exc}") from exc
    if not isinstance(splits, list) or not all(
        isinstance(s, dict) and {"train", "val"} <= set(s) for s in splits
    ):
        raise InputError(f"{path}: expected a list of {{'train': [...], 'val': [...]}} folds")
    return splits


def select_subset(
    train_ids: Sequence[str], n: int | None, *, seed: int = 0, draw: str = "nested"
) -> list[str]:
    """``n`` cases of ``train_ids`` drawn by a seeded shuffle (all when ``n`` is None).

    Args:
        train_ids: The fold's training cases.
        n: How many to draw (``None``: all).
        seed: The run's seed.
        draw: ``"nested"``: the first ``n`` of one permutation per seed, so that with
            one seed the cases of a smaller ``n`` are among those of every larger one;
            ``"independent"``: a permutation seeded by ``(seed, n)``, so that the draws
            of two sizes share cases only by chance.

    Raises:
        OptionError: ``n`` exceeds the available cases.
        ValueError: Unknown ``draw``.
    """
    ids = sorted(train_ids)
    if draw not in CASE_DRAWS:
        raise InputError(f"draw must be one of {list(CASE_DRAWS)}, got {draw!r}")
    if n is None:
        return ids
    if n > len(ids):
        raise OptionError(
            f"{{train_cases}} {n} exceeds the {len(ids)} training cases of this fold", "train_cases"
        )
    rng = np.random.default_rng(seed + 1000 if draw == "nested" else [seed, n])
    order = rng.permutation(len(ids))
    return sorted(ids[i] for i in order[:n])


def fold_cases(
    case_ids: Sequence[str], plan: FoldPlan, *, split_file: str | Path | None = None
) -> tuple[list[str], list[str], list[dict] | None]:
    """The training pool and the held-out (validation) cases of a fold.

    The one split rule of fdseg: training runs and ``fdseg experiment`` both call it,
    so that an experiment's held-out cases are exactly the ones its runs never train
    on. The k-fold split is a property of the dataset, made with a fixed seed (0); a
    run keeps it in ``splits_final.json`` (nnU-Net's format) and reads it back.

    Args:
        case_ids: The dataset's training case ids.
        plan: The fold plan (:func:`plan_folds`).
        split_file: A ``splits_final.json`` to read when it exists (it must have
            ``plan.n_folds`` folds); ``None``: always make the split.

    Returns:
        ``(pool, val_ids, new_splits)``: the fold's training cases, its validation
        cases (both sorted; every case twice for the ``"all"`` fold) and the split to
        write into ``split_file`` (``None`` when it was read, or for the ``"all"`` fold).

    Raises:
        OptionError: ``split_file`` holds another number of folds.
    """
    if plan.fold == ALL_FOLD:
        return sorted(case_ids), sorted(case_ids), None
    new_splits = None
    if split_file is not None and Path(split_file).is_file():
        splits = load_splits(split_file)
        if len(splits) != plan.n_folds:
            raise OptionError(
                f"{split_file} holds {len(splits)} folds but this run uses {plan.n_folds}; "
                "use another {out} or the same {n_folds}",
                "out",
                "n_folds",
            )
    else:
        splits = new_splits = make_splits(case_ids, n_folds=plan.n_folds, seed=0)
    return list(splits[plan.fold]["train"]), list(splits[plan.fold]["val"]), new_splits
