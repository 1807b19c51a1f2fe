"""Reading the per-run results of an experiment (``runs/*/result.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fdseg_core.train.logs import MetricsLog

__all__ = ["RESULT", "class_keys", "load_run", "method_of", "per_pair_scores"]

#: The file a finished run of an experiment leaves in its folder.
RESULT = "result.json"


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict]] | None:
    """A finished run's ``result.json`` and the rows of its ``metrics.jsonl``.

    Args:
        run_dir: The run's folder (``EXPERIMENT/runs/<run>``).

    Returns:
        ``(result, rows)``, or ``None`` when the run has no result yet (``rows`` is empty
        when the run left no metrics log).
    """
    path = Path(run_dir) / RESULT
    if not path.is_file():
        return None
    return json.loads(path.read_text()), MetricsLog.load(run_dir).rows


def method_of(result: dict[str, Any]) -> str:
    """The method label of a run (``"none"``, ``"early"``, ``"early-reference"``, ...).

    Results written before the label had its own key kept it under ``"fusion"``.
    """
    return result["method"] if "method" in result else result["fusion"]


def _as_float(v: Any) -> float:
    return float("nan") if v is None else float(v)


def per_pair_scores(results: list[dict], size: int, method: str, key: str) -> dict[tuple, float]:
    """``{(seed, case): score}`` of one method at one training size."""
    scores = {}
    for r in results:
        if r["train_size"] == size and method_of(r) == method:
            for row in r["cases"]:
                scores[(r["seed"], row["case"])] = _as_float(row.get(key))
    return scores


def class_keys(results: list[dict]) -> list[str]:
    """The ``dice_<class>`` keys of the results, in order of first appearance."""
    keys: list[str] = []
    for r in results:
        for row in r["cases"]:
            keys += [k for k in row if k.startswith("dice_") and k not in keys]
    return keys
