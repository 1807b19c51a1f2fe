"""Deterministic k-fold splits (nnU-Net's ``splits_final.json`` format) and subsets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["make_splits", "save_splits", "load_splits", "select_subset"]


def make_splits(case_ids: Sequence[str], *, n_folds: int = 5, seed: int = 0) -> list[dict]:
    """``[{"train": [...], "val": [...]}, ...]``: each case is validation in exactly one fold.

    The order depends only on the sorted case ids and the seed.

    Raises:
        ValueError: Fewer cases than folds, or duplicate case ids.
    """
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("case ids must be unique")
    if n_folds < 2 or len(ids) < n_folds:
        raise ValueError(
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
    from fdseg_core.train.checkpoint import atomic_write_text

    atomic_write_text(Path(path), json.dumps(splits, indent=1) + "\n")


def load_splits(path: str | Path) -> list[dict]:
    """Read a ``splits_final.json``; a malformed file is a ``ValueError`` naming it."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} could not be read as a splits file: {exc}") from exc
    if not isinstance(splits, list) or not all(
        isinstance(s, dict) and {"train", "val"} <= set(s) for s in splits
    ):
        raise ValueError(f"{path}: expected a list of {{'train': [...], 'val': [...]}} folds")
    return splits


def select_subset(train_ids: Sequence[str], n: int | None, *, seed: int = 0) -> list[str]:
    """The first ``n`` cases of a seeded shuffle of ``train_ids`` (all when ``n`` is None).

    Raises:
        ValueError: ``n`` exceeds the available cases.
    """
    ids = sorted(train_ids)
    if n is None:
        return ids
    if n > len(ids):
        raise ValueError(f"--train-cases {n} exceeds the {len(ids)} training cases of this fold")
    order = np.random.default_rng(seed + 1000).permutation(len(ids))
    return sorted(ids[i] for i in order[:n])
