"""What issue 39's scripts share: the parts' folders, their runs, and the report rows.

Only fdseg's public experiment API is used (``load_run``, ``summarise``), as the commit
in COMMIT has it: every script runs with the Python of the experiment's worktree
(``run.sh``'s parts ``choose``, ``seeds``, ``decide``), like the runs themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

from fdseg_core.experiment.report import summarise
from fdseg_core.experiment.results import load_run

HERE = Path(__file__).resolve().parent

#: Part 2: the arms of run.sh, in its order, with what each changes from the default.
ARMS: dict[str, str] = {
    "default": "fdseg train's default recipe (paper_unet3d, sigmoid Dice, Adam, "
    "48 x 48 x 32 patches, batch 2, no augmentation)",
    "augment": "the same with augmentation (`--augment`)",
    "plan": "the same on the plan's patch and batch (36 x 52 x 36, batch 5)",
    "nnunet_like": "`--recipe nnunet_like` (unet3d, Dice + CE, AdamW + poly, clip, "
    "augmentation, the plan's patch and batch), fusion none",
}
ABLATION_SIZES = (9, 50)
ABLATION_SEEDS = (0, 1, 2)
FUSIONS = ("none", "early", "late")


def experiment_runs(folder: Path) -> tuple[list[dict], list[str]]:
    """The results of an ``fdseg experiment`` folder's grid (its ``experiment.json``),
    and the names of its runs without one."""
    meta = json.loads((folder / "experiment.json").read_text())
    results, missing = [], []
    for name in meta["runs"]:
        loaded = load_run(folder / "runs" / name)
        if loaded is None:
            missing.append(name)
        else:
            results.append(loaded[0])
    return results, missing


def ablation_runs() -> tuple[list[dict], list[str]]:
    """Every arm's results, with the arm as the method, and the runs still missing."""
    results, missing = [], []
    for arm in ARMS:
        folder = HERE / "ablation" / arm
        expected = [f"n{n:03d}-none-s{s}" for n in ABLATION_SIZES for s in ABLATION_SEEDS]
        for name in expected:
            loaded = load_run(folder / "runs" / name)
            if loaded is None:
                missing.append(f"{arm}/{name}")
            else:
                results.append({**loaded[0], "method": arm})
    return results, missing


def mean_rows(table: list[dict]) -> dict[tuple, dict]:
    """The rows of the mean over classes, by (training size, method)."""
    return {(r["train_size"], r["method"]): r for r in table if r["class"] == "mean"}


def table_of(results: list[dict], methods, baseline: str) -> list[dict]:
    """The report rows (fdseg's own summary, seed-level statistics) of these results."""
    return summarise(results, methods=list(methods), baseline=baseline)


def run_seconds(result: dict) -> float:
    """A run's own time: training, validation and test evaluation (one core)."""
    t = result.get("time_s", {})
    return float(t.get("train", 0.0) + t.get("validation", 0.0) + t.get("test", 0.0))


def write_decision(name: str, title: str, body: list[str], chosen: str, note: str = "") -> int:
    """Write a decision file (``HERE/name``): a title, the body, and the ``Chosen: `x```
    line that ``experiments/test_decisions.py`` reads; print the choice.

    Args:
        name: The file (``CHOICE.md``, ``FUSION.md``, ...).
        title: Its heading, after "Issue 39: ".
        body: The lines between the heading and the choice.
        chosen: What was chosen.
        note: Words after the choice (``" (no arm qualified: ...)."``); else ``"."``-less.

    Returns:
        0, the script's exit status.
    """
    text = "\n".join([f"# Issue 39: {title}", "", *body, "", f"Chosen: `{chosen}`" + note, ""])
    (HERE / name).write_text(text)
    print(chosen)
    return 0
